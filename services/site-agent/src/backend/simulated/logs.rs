//! Container logs of the simulated cluster: one line per `log_interval` since the
//! container first started, computed rather than stored (an idle site holds no log
//! buffers). `tail_lines`, `timestamps` and `follow` behave as with a kubelet.

use std::sync::Weak;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;

use super::Inner;
use crate::backend::LogStream;
use crate::error::BackendError;
use crate::model::PodId;

/// At most this many lines are served without `tail_lines` (a kubelet serves what
/// its rotated files still hold).
const MAX_BACKLOG_LINES: i64 = 10_000;
/// Backlog lines per chunk.
const LINES_PER_CHUNK: i64 = 256;

/// One container's log, as of when it was asked for.
#[derive(Clone, Debug)]
pub(super) struct LogTarget {
    pub pod: PodId,
    pub pod_uid: String,
    pub container: String,
    pub node: String,
    pub started: DateTime<Utc>,
    pub interval: Duration,
}

impl LogTarget {
    /// Line `k`, written at `started + k * interval`.
    fn line(&self, k: i64, timestamps: bool) -> String {
        let at = self.at(k);
        let ts = if timestamps {
            format!("{} ", at.to_rfc3339_opts(SecondsFormat::Nanos, true))
        } else {
            String::new()
        };
        format!(
            "{ts}{} level=info container={} pod={} node={} msg=\"handled request\" request={} status=200 duration_ms={}\n",
            at.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.container,
            self.pod.name,
            self.node,
            k,
            3 + (k * 7) % 40
        )
    }

    fn at(&self, k: i64) -> DateTime<Utc> {
        let step =
            chrono::Duration::from_std(self.interval).unwrap_or(chrono::Duration::seconds(1));
        self.started + step * (k as i32)
    }

    /// Lines written by `now`.
    fn lines_by(&self, now: DateTime<Utc>) -> i64 {
        let elapsed = (now - self.started).to_std().unwrap_or_default();
        let interval = self.interval.as_millis().max(1);
        (elapsed.as_millis() / interval) as i64 + 1
    }
}

/// The log stream for `target`. Following ends when the pod is gone (or restarted
/// elsewhere), or when the backend is dropped.
pub(super) fn stream(
    inner: Weak<Inner>,
    target: LogTarget,
    tail: Option<i64>,
    follow: bool,
    timestamps: bool,
) -> LogStream {
    let written = target.lines_by(Utc::now());
    let first = match tail {
        Some(n) => (written - n).max(0),
        None => (written - MAX_BACKLOG_LINES).max(0),
    };
    let backlog_target = target.clone();
    let backlog = futures::stream::iter((first..written).step_by(LINES_PER_CHUNK as usize).map(
        move |start| {
            let end = (start + LINES_PER_CHUNK).min(written);
            let mut chunk = String::new();
            for k in start..end {
                chunk.push_str(&backlog_target.line(k, timestamps));
            }
            Ok(chunk.into_bytes())
        },
    ));
    if !follow {
        return backlog.boxed();
    }
    let live = futures::stream::unfold(
        (inner, target, written),
        move |(inner, target, k)| async move {
            let due = target.at(k);
            let wait = (due - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            let alive = inner.upgrade().is_some_and(|inner| {
                inner.pod_uid(&target.pod).as_deref() == Some(target.pod_uid.as_str())
            });
            if !alive {
                return None;
            }
            let line: Result<Vec<u8>, BackendError> = Ok(target.line(k, timestamps).into_bytes());
            Some((line, (inner, target, k + 1)))
        },
    );
    backlog.chain(live).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::VirtualCluster;

    fn target(started: DateTime<Utc>) -> LogTarget {
        LogTarget {
            pod: PodId {
                virtual_cluster: VirtualCluster::new("acme", "shop", "demo").unwrap(),
                namespace: "shop".into(),
                name: "web-abc".into(),
            },
            pod_uid: "u".into(),
            container: "web".into(),
            node: "n1".into(),
            started,
            interval: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn tail_and_timestamps() {
        let t = target(Utc::now() - chrono::Duration::seconds(30));
        let chunks: Vec<Vec<u8>> = stream(Weak::new(), t, Some(3), false, true)
            .map(|c| c.unwrap())
            .collect()
            .await;
        let text = String::from_utf8(chunks.concat()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[2].contains("request=30"), "{text}");
        // RFC 3339 timestamp prefix, as `kubectl logs --timestamps` shows.
        assert!(lines[0].split(' ').next().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn follow_ends_when_the_backend_is_gone() {
        let t = target(Utc::now());
        let chunks: Vec<_> = stream(Weak::new(), t, None, true, false).collect().await;
        assert_eq!(chunks.len(), 1);
    }
}
