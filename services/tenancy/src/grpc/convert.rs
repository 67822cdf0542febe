//! Records to protos and back.

use chrono::{DateTime, Utc};
use manifold_auth::Role;
use manifold_proto::tenancy::v1 as pb;

use crate::domain::*;

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn tenant(t: TenantRecord) -> pb::Tenant {
    pb::Tenant {
        name: tenant_name(&t.name),
        uid: t.id.to_string(),
        display_name: t.display_name,
        labels: t.labels,
        state: match t.state {
            TenantState::Active => pb::tenant::State::Active,
            TenantState::Suspended => pb::tenant::State::Suspended,
        } as i32,
        create_time: Some(ts(t.create_time)),
        update_time: Some(ts(t.update_time)),
        etag: etag(t.version),
    }
}

pub fn namespace(n: NamespaceRecord) -> pb::Namespace {
    pb::Namespace {
        name: format!("tenants/{}/namespaces/{}", n.tenant, n.name),
        uid: n.id.to_string(),
        display_name: n.display_name,
        labels: n.labels,
        create_time: Some(ts(n.create_time)),
        etag: etag(n.version),
    }
}

pub fn user(u: UserRecord) -> pb::User {
    pb::User {
        name: u.user.name(),
        uid: u.id.to_string(),
        display_name: u.display_name,
        email: u.email,
        create_time: Some(ts(u.create_time)),
        etag: etag(u.version),
    }
}

pub fn role_to_proto(r: Role) -> pb::Role {
    match r {
        Role::SystemAdmin => pb::Role::SystemAdmin,
        Role::TenantAdmin => pb::Role::TenantAdmin,
        Role::NamespaceAdmin => pb::Role::NamespaceAdmin,
        Role::NamespaceEditor => pb::Role::NamespaceEditor,
        Role::NamespaceViewer => pb::Role::NamespaceViewer,
    }
}

pub fn role_from_proto(r: i32) -> Option<Role> {
    Some(match pb::Role::try_from(r).ok()? {
        pb::Role::SystemAdmin => Role::SystemAdmin,
        pb::Role::TenantAdmin => Role::TenantAdmin,
        pb::Role::NamespaceAdmin => Role::NamespaceAdmin,
        pb::Role::NamespaceEditor => Role::NamespaceEditor,
        pb::Role::NamespaceViewer => Role::NamespaceViewer,
        pb::Role::Unspecified => return None,
    })
}

pub fn binding(b: BindingRecord) -> pb::RoleBinding {
    pb::RoleBinding {
        name: b.scope.binding_name(&b.binding_id),
        role: role_to_proto(b.role) as i32,
        user: b.user.name(),
        create_time: Some(ts(b.create_time)),
    }
}

pub fn token(t: TokenRecord) -> pb::ApiToken {
    let state = if t.revoke_time.is_some() {
        pb::api_token::State::Revoked
    } else if t.expire_time <= Utc::now() {
        pb::api_token::State::Expired
    } else {
        pb::api_token::State::Active
    };
    pb::ApiToken {
        name: t.name(),
        display_name: t.display_name,
        scope: t.scope,
        create_time: Some(ts(t.create_time)),
        expire_time: Some(ts(t.expire_time)),
        revoke_time: t.revoke_time.map(ts),
        state: state as i32,
    }
}
