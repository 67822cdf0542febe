//! `mfctl audit list`: the audit log (one event per mutating call), newest
//! first, for one tenant (tenant-admins) or everything (system-admins).

use chrono::{DateTime, Utc};
use manifold_proto::audit::v1 as apb;
use serde_json::{Value, json};

use super::util::collect_pages;

use crate::{
    Ctx, names,
    error::Result,
    output::{self, Render, parse_duration},
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Events of --tenant (or the context's tenant), or of everything with
    /// --all-tenants; newest first.
    List {
        /// Every tenant and the system-level events (system-admins).
        #[arg(long, conflicts_with = "tenant")]
        all_tenants: bool,
        /// Only events at or after this: an age (`1h`, `7d`) or an RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        /// Only events before this (same forms as --since).
        #[arg(long, value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        /// Exact actor, e.g. `tenants/acme/users/alice`.
        #[arg(long)]
        actor: Option<String>,
        /// Full method, its last segment (`CreateNamespace`) or a Kubernetes verb.
        #[arg(long)]
        method: Option<String>,
        #[arg(long, value_enum)]
        source: Option<Source>,
        #[arg(long, value_enum)]
        result: Option<Outcome>,
        /// Exact result code (`PERMISSION_DENIED`, `404`).
        #[arg(long)]
        code: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Source {
    Grpc,
    Kubernetes,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Outcome {
    Success,
    Failure,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if text.trim().starts_with(|c: char| c.is_ascii_digit())
        && text.trim().chars().all(|c| c.is_ascii_alphanumeric())
    {
        // An age: report why it is wrong (unknown unit, too long).
        let age = parse_duration(text)?;
        return chrono::Duration::from_std(age)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
            .ok_or_else(|| format!("{text:?} is too long ago"));
    }
    Err(format!(
        "{text:?} is neither an age like 1h or 7d nor an RFC 3339 time"
    ))
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub async fn run(args: Args, ctx: &mut Ctx) -> Result<()> {
    let format = ctx.format();
    let Sub::List {
        all_tenants,
        since,
        until,
        actor,
        method,
        source,
        result,
        code,
        limit,
    } = args.command;
    let parent = if all_tenants {
        "tenants/-".to_owned()
    } else {
        names::tenant(&ctx.tenant()?)
    };
    let client = apb::audit_service_client::AuditServiceClient::new(ctx.conn().await?.svc());
    let all = collect_pages(Some(limit), |page_token| {
        let mut client = client.clone();
        let request = apb::ListAuditEventsRequest {
            parent: parent.clone(),
            page_size: i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000),
            page_token,
            since: since.map(ts),
            until: until.map(ts),
            actor: actor.clone().unwrap_or_default(),
            method: method.clone().unwrap_or_default(),
            source: match source {
                None => apb::Source::Unspecified,
                Some(Source::Grpc) => apb::Source::Grpc,
                Some(Source::Kubernetes) => apb::Source::Kubernetes,
            } as i32,
            result: match result {
                None => apb::Outcome::Unspecified,
                Some(Outcome::Success) => apb::Outcome::Success,
                Some(Outcome::Failure) => apb::Outcome::Failure,
            } as i32,
            code: code.clone().unwrap_or_default(),
        };
        async move {
            let r = client.list_audit_events(request).await?.into_inner();
            Ok((r.audit_events.into_iter().map(Event).collect(), r.next_page_token))
        }
    })
    .await?;
    output::print_list(format, &all)
}

struct Event(apb::AuditEvent);

impl Render for Event {
    const COLUMNS: &'static [&'static str] =
        &["TIME", "ACTOR", "SOURCE", "METHOD", "RESOURCE", "CODE"];

    fn row(&self) -> Vec<String> {
        let e = &self.0;
        vec![
            output::time(&e.time).map_or("<none>".into(), |t| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }),
            if e.actor.is_empty() {
                "<anonymous>".into()
            } else {
                e.actor.clone()
            },
            match e.source() {
                apb::Source::Grpc => "grpc".into(),
                apb::Source::Kubernetes => "kubernetes".into(),
                apb::Source::Unspecified => "<none>".into(),
            },
            // The last segment is what people read; -o json has the full method.
            e.method.rsplit('/').next().unwrap_or_default().to_owned(),
            output::or_none(&e.resource),
            e.code.clone(),
        ]
    }

    fn to_json(&self) -> Value {
        let e = &self.0;
        json!({
            "name": e.name,
            "time": output::ts_json(&e.time),
            "tenant": e.tenant,
            "actor": e.actor,
            "actorKind": e.actor_kind().as_str_name(),
            "source": e.source().as_str_name(),
            "method": e.method,
            "resource": e.resource,
            "httpMethod": e.http_method,
            "path": e.path,
            "code": e.code,
            "success": e.success,
            "message": e.message,
            "requestId": e.request_id,
            "traceId": e.trace_id,
        })
    }

    fn name(&self) -> String {
        self.0.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_until_parse_without_panicking() {
        let t = parse_time("1h").unwrap();
        let expected = Utc::now() - chrono::Duration::hours(1);
        assert!((t - expected).num_seconds().abs() < 5, "{t}");
        assert_eq!(
            parse_time("2024-01-02T03:04:05Z").unwrap().to_rfc3339(),
            "2024-01-02T03:04:05+00:00"
        );
        for text in ["999999999d", "18446744073709551615d", "36601d"] {
            let err = parse_time(text).unwrap_err();
            assert!(err.contains("too long"), "{text}: {err}");
        }
        assert!(parse_time("2w").unwrap_err().contains("unit"));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
