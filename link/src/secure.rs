//! zenoh secured from a bundle: mutual TLS with the site CA, and a
//! default-deny access-control list keyed on certificate common names.
//!
//! Topology under a bundle: the master is the site's zenoh router; nodes are
//! its clients and reach each other only through it. So the master's ACL is
//! where every node's rights are enforced, by name:
//!
//! - a node publishes only its own status, tiles and identities, job items
//!   only as their sender (`job/<receiver>/<sender>`) and job outputs only
//!   under its own id (`jobout/<node>/<job>`), listens for job items sent
//!   to it only (`job/<node>/*`), holds only
//!   its own liveliness token, serves (and replies) only under its own id
//!   (`sync`, `query`, `train`, `reid`, `probe`), and
//!   asks re-ID and probes links only under keys that name it as the asker
//!   (`reid/<server>/<asker>`, `probe/<target>/<asker>`);
//! - it may listen to plans, merges, identities and model refreshes, fetch
//!   the plan and the refresh in force, and fetch model files;
//! - nothing else: no plans, merges, sync or record queries, no wildcard
//!   queryables, no deletes. The master's own session is local to the router
//!   and is not filtered.
//!
//! A node's ACL accepts only the `master` certificate; its TLS link checks
//! the chain against the site CA (not the host name: names are checked by
//! the ACL, and nodes often connect by address).

use crate::pki::{Bundle, Role, MASTER_NAME};
use crate::LinkError;
use serde_json::{json, Value};
use vidar_protocol::{Keys, NodeId};

/// Every ACL message type zenoh knows.
const ALL_MESSAGES: [&str; 9] = [
    "put",
    "delete",
    "declare_subscriber",
    "query",
    "declare_queryable",
    "reply",
    "liveliness_token",
    "declare_liveliness_subscriber",
    "liveliness_query",
];

fn set(config: &mut zenoh::Config, key: &'static str, value: &str) -> Result<(), LinkError> {
    config
        .insert_json5(key, value)
        .map_err(|e| LinkError::Setting {
            key: "bundle",
            reason: format!("zenoh {key} = {value}: {e}"),
        })
}

/// Mutual TLS from `b` and its ACL, into `config`.
pub(crate) fn apply(
    config: &mut zenoh::Config,
    b: &Bundle,
    keys: &Keys,
    enrolled: &[NodeId],
) -> Result<(), LinkError> {
    // A path as a JSON string (serde_json escapes what needs it).
    let path = |p: std::path::PathBuf| json!(p.to_string_lossy()).to_string();
    let (ca, key, cert) = (path(b.ca_file()), path(b.key_file()), path(b.cert_file()));
    // The same certificate whether this process accepts or opens a link.
    for (k, v) in [
        ("transport/link/tls/root_ca_certificate", &ca),
        ("transport/link/tls/listen_private_key", &key),
        ("transport/link/tls/listen_certificate", &cert),
        ("transport/link/tls/connect_private_key", &key),
        ("transport/link/tls/connect_certificate", &cert),
    ] {
        set(config, k, v)?;
    }
    set(config, "transport/link/tls/enable_mtls", "true")?;
    set(config, "transport/link/tls/verify_name_on_connect", "false")?;
    let acl = match b.role {
        Role::Master => master_acl(keys, enrolled),
        Role::Node => node_acl(keys),
    };
    set(config, "access_control", &acl.to_string())
}

/// The master router's ACL: per enrolled node, the rights listed in the
/// module documentation.
pub(crate) fn master_acl(keys: &Keys, enrolled: &[NodeId]) -> Value {
    let p = keys.prefix();
    let mut rules = vec![
        json!({"id": "node-listen", "messages": ["declare_subscriber"], "flows": ["ingress"],
               "permission": "allow",
               "key_exprs": [keys.plan(), keys.merges(), keys.identities_all(), keys.models()]}),
        json!({"id": "to-nodes", "messages": ALL_MESSAGES, "flows": ["egress"],
               "permission": "allow", "key_exprs": [format!("{p}/**")]}),
    ];
    let mut subjects = Vec::new();
    let mut policies = Vec::new();
    for n in enrolled {
        let r = |what: &str| format!("{n}-{what}");
        rules.push(
            json!({"id": r("publish"), "messages": ["put"], "flows": ["ingress"],
            "permission": "allow",
            "key_exprs": [keys.status(n), format!("{p}/tile/{n}/*"), keys.identities(n),
                          keys.job_from(n), format!("{p}/jobout/{n}/*")]}),
        );
        rules.push(
            json!({"id": r("jobs-in"), "messages": ["declare_subscriber"], "flows": ["ingress"],
            "permission": "allow", "key_exprs": [keys.job_to(n)]}),
        );
        rules.push(
            json!({"id": r("serve"), "messages": ["declare_queryable", "reply"],
            "flows": ["ingress"], "permission": "allow",
            "key_exprs": [keys.sync(n), keys.query(n), keys.train(n), keys.reid_served_by(n),
                          keys.probe_served_by(n)]}),
        );
        rules.push(
            json!({"id": r("ask"), "messages": ["query"], "flows": ["ingress"],
            "permission": "allow",
            "key_exprs": [keys.plan(), keys.models(), keys.model_files(),
                          keys.reid_asked_by(n), keys.probe_asked_by(n)]}),
        );
        rules.push(json!({"id": r("alive"), "messages": ["liveliness_token"],
            "flows": ["ingress"], "permission": "allow", "key_exprs": [keys.node_alive(n)]}));
        subjects.push(json!({"id": format!("node-{n}"), "cert_common_names": [n.as_str()]}));
        policies.push(json!({
            "rules": [r("publish"), r("jobs-in"), r("serve"), r("ask"), r("alive"), "node-listen".to_string(), "to-nodes".to_string()],
            "subjects": [format!("node-{n}")]
        }));
    }
    json!({"enabled": true, "default_permission": "deny",
           "rules": rules, "subjects": subjects, "policies": policies})
}

impl crate::Link {
    /// The master's router takes `enrolled` as the site's roster, now: its
    /// access list is rebuilt and applied at once to every open transport,
    /// so a node taken off the roster can do nothing more. The transports
    /// of the nodes in `reconnect` (those whose standing changed) are then
    /// closed, with all they declared (subscribers, queryables, liveliness
    /// tokens); one that connects again does so under the new list, and an
    /// enrolled one declares afresh what the old list had dropped. Returns
    /// how many transports were closed. Only the master, under its bundle,
    /// has such a list.
    pub fn replace_roster(
        &self,
        enrolled: &[NodeId],
        reconnect: &[NodeId],
    ) -> Result<usize, LinkError> {
        if !self.signs() {
            return Err(LinkError::Setting {
                key: "bundle",
                reason: "only the master's router, under its bundle, has a roster".into(),
            });
        }
        let acl = master_acl(self.keys(), enrolled).to_string();
        let names: Vec<String> = reconnect.iter().map(|n| n.as_str().to_string()).collect();
        self.session()
            .vidar_replace_access_control(&acl, &names)
            .map_err(|e| LinkError::Setting {
                key: "bundle",
                reason: format!("replacing the router's access list: {e}"),
            })
    }
}

/// A node's ACL: everything of its site from the master's certificate, and
/// nothing from anyone else.
pub(crate) fn node_acl(keys: &Keys) -> Value {
    json!({"enabled": true, "default_permission": "deny",
        "rules": [{"id": "master", "messages": ALL_MESSAGES, "flows": ["ingress", "egress"],
                   "permission": "allow", "key_exprs": [format!("{}/**", keys.prefix())]}],
        "subjects": [{"id": "master", "cert_common_names": [MASTER_NAME]}],
        "policies": [{"rules": ["master"], "subjects": ["master"]}]})
}

/// The protocol of an endpoint (`tcp`, `tls`...).
pub(crate) fn protocol(endpoint: &str) -> &str {
    endpoint.split('/').next().unwrap_or("")
}

/// Whether an endpoint's address is on loopback (`127.0.0.0/8`, `::1`,
/// `localhost`).
pub(crate) fn is_loopback(endpoint: &str) -> bool {
    let Some((_, rest)) = endpoint.split_once('/') else {
        return false;
    };
    let addr = rest.split(['?', '#']).next().unwrap_or("");
    let host = match addr.rsplit_once(':') {
        Some((h, _port)) => h,
        None => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints() {
        for e in [
            "tcp/127.0.0.1:7447",
            "tcp/127.1.2.3:0",
            "tcp/[::1]:7447",
            "tcp/localhost:7447",
            "tls/127.0.0.1:7447?iface=lo",
        ] {
            assert!(is_loopback(e), "{e}");
        }
        for e in [
            "tcp/0.0.0.0:7447",
            "tcp/[::]:7447",
            "tcp/10.0.0.2:7447",
            "tcp/master.example:7447",
            "nonsense",
        ] {
            assert!(!is_loopback(e), "{e}");
        }
        assert_eq!(protocol("tls/1.2.3.4:5"), "tls");
    }

    #[test]
    fn the_master_acl_names_each_node_and_is_valid_zenoh() {
        let keys = Keys::new("s").expect("site");
        let nodes = [NodeId::new("a").expect("id"), NodeId::new("b").expect("id")];
        let acl = master_acl(&keys, &nodes);
        let text = acl.to_string();
        assert!(
            text.contains("vidar/s/status/a") && text.contains("vidar/s/reid/*/b"),
            "{text}"
        );
        assert_eq!(acl["default_permission"], "deny");
        let mut c = zenoh::Config::default();
        c.insert_json5("access_control", &text)
            .expect("zenoh takes it");
        let mut c = zenoh::Config::default();
        c.insert_json5("access_control", &node_acl(&keys).to_string())
            .expect("zenoh takes it");
        // An empty roster is still a valid (deny-all) list.
        let mut c2 = zenoh::Config::default();
        c2.insert_json5("access_control", &master_acl(&keys, &[]).to_string())
            .expect("zenoh takes it");
        drop(c);
    }
}
