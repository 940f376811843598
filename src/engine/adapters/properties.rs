//! The **properties** adapter: the chart renders `server.properties` at start.
//!
//! Bitnami chart ≥ 24 renders the file in an init container into an `emptyDir` and mounts it into
//! the broker (with `subPath`); the image then ignores `KAFKA_CFG_*`. The webhook cannot edit
//! that file, which exists only at run time, so it appends one init container after the chart's
//! own. That container runs `kafka-expose patch-properties` on the file in the shared volume
//! ([`crate::kafka::properties`]), with the listener, host and port in its environment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, PodSecurityContext, PodSpec, ResourceRequirements,
    SeccompProfile, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::names::{INIT_CONTAINER, envs};

/// The user the init container runs as when the pod names none: the conventional non-root
/// user of distroless images.
pub const DEFAULT_RUN_AS_USER: i64 = 65532;

/// Where the broker's `server.properties` is written at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The volume that holds the file.
    pub volume: String,
    /// Where the init container mounts that volume: where the chart's writer mounts it, so that
    /// links the chart made resolve.
    pub mount_path: String,
    /// The file's path inside the init container.
    pub file: String,
    /// The chart's init container that writes the file.
    pub writer: String,
}

/// What [`find_target`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A file the chart writes at start: the properties adapter applies.
    Target(Target),
    /// A properties file the adapter cannot edit, and why.
    Unusable(String),
    Nothing,
}

/// Looks for the broker's properties file: a mount ending in `server.properties`, or a
/// `*.properties` path in the broker's command, inside a volume that an init container writes.
pub fn find_target(spec: &PodSpec, broker: &Container) -> Found {
    let mounts = broker.volume_mounts.as_deref().unwrap_or_default();
    let mut unusable = None;
    for m in mounts {
        if !m.mount_path.ends_with("server.properties") {
            continue;
        }
        let rel = m.sub_path.clone().unwrap_or_else(|| {
            m.mount_path
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        });
        match resolve(spec, &m.name, &rel) {
            Found::Target(t) => return Found::Target(t),
            Found::Unusable(why) => unusable = Some(why),
            Found::Nothing => {}
        }
    }
    let words = broker
        .command
        .iter()
        .flatten()
        .chain(broker.args.iter().flatten())
        .flat_map(|s| s.split_whitespace());
    for word in words {
        if !word.contains(".properties") || !word.starts_with('/') {
            continue;
        }
        let Some(m) = mounts
            .iter()
            .filter(|m| word.starts_with(&format!("{}/", m.mount_path.trim_end_matches('/'))))
            .max_by_key(|m| m.mount_path.len())
        else {
            continue;
        };
        let rel = &word[m.mount_path.trim_end_matches('/').len() + 1..];
        let Some(rel) = rewrite_references(broker, rel) else {
            unusable = Some(format!(
                "the properties path {word} uses variables the init container cannot resolve"
            ));
            continue;
        };
        match resolve(spec, &m.name, &rel) {
            Found::Target(t) => return Found::Target(t),
            Found::Unusable(why) => unusable = Some(why),
            Found::Nothing => {}
        }
    }
    unusable.map_or(Found::Nothing, Found::Unusable)
}

/// Rewrites `$(VAR)` in a path to kafka-expose's own downward-API variable where `VAR` is the
/// pod name; `None` for any other reference.
fn rewrite_references(broker: &Container, rel: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = rel;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find(')')? + start;
        let var = &rest[start + 2..end];
        let field = broker
            .env
            .iter()
            .flatten()
            .find(|e| e.name == var)?
            .value_from
            .as_ref()?
            .field_ref
            .as_ref()?
            .field_path
            .as_str();
        match field {
            "metadata.name" => out.push_str(&envs::reference(envs::POD_NAME)),
            "metadata.namespace" => out.push_str(&envs::reference(envs::NAMESPACE)),
            _ => return None,
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn resolve(spec: &PodSpec, volume: &str, rel: &str) -> Found {
    let Some(v) = spec.volumes.iter().flatten().find(|v| v.name == volume) else {
        return Found::Nothing;
    };
    if let Some(cm) = &v.config_map {
        return Found::Unusable(format!(
            "server.properties is mounted straight from ConfigMap {}, which is read-only in the pod, and kafka-expose does not move a mount the chart made; render the file into an emptyDir from an init container (as the Bitnami chart does), or set the listeners through KAFKA_* variables, and kafka-expose can add its listener there",
            cm.name
        ));
    }
    if v.empty_dir.is_none() {
        return Found::Nothing;
    }
    let writer = spec.init_containers.iter().flatten().find_map(|c| {
        if c.name == INIT_CONTAINER {
            return None;
        }
        c.volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == volume && m.read_only != Some(true))
            .map(|m| (c.name.clone(), m.mount_path.clone()))
    });
    let Some((writer, mount_path)) = writer else {
        return Found::Nothing;
    };
    let file = format!("{}/{}", mount_path.trim_end_matches('/'), rel);
    Found::Target(Target {
        volume: volume.to_string(),
        mount_path,
        file,
        writer,
    })
}

/// The init container that patches the file, after the chart's writer has run.
///
/// It satisfies the restricted Pod Security Standard: non-root, no privilege escalation, all
/// capabilities dropped, a read-only root filesystem and the runtime's seccomp profile. It runs as
/// the user that wrote the file (the writer's, else the broker's, else the pod's user), so it
/// may rewrite it.
pub fn init_container(
    spec: &PodSpec,
    broker: &Container,
    target: &Target,
    image: &str,
    env: Vec<EnvVar>,
) -> Container {
    let writer = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == target.writer);
    let from = |c: Option<&Container>| {
        c.and_then(|c| c.security_context.as_ref())
            .map(|sc| (sc.run_as_user, sc.run_as_group))
    };
    let pod_sc: Option<&PodSecurityContext> = spec.security_context.as_ref();
    let (user, group) = [from(writer), from(Some(broker))]
        .into_iter()
        .flatten()
        .find(|(u, _)| u.is_some())
        .or_else(|| pod_sc.map(|p| (p.run_as_user, p.run_as_group)))
        .unwrap_or((None, None));
    let user = user.filter(|u| *u != 0).unwrap_or(DEFAULT_RUN_AS_USER);
    let mut c = restricted(Container {
        name: INIT_CONTAINER.to_string(),
        image: Some(image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(vec!["patch-properties".into()]),
        env: Some(env),
        volume_mounts: Some(vec![VolumeMount {
            name: target.volume.clone(),
            mount_path: target.mount_path.clone(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    });
    if let Some(sc) = c.security_context.as_mut() {
        sc.run_as_user = Some(user);
        sc.run_as_group = group;
    }
    c
}

/// A kafka-expose container as the restricted Pod Security Standard wants it: non-root, no
/// privilege escalation, all capabilities dropped, a read-only root filesystem and the
/// runtime's seccomp profile; small requests and limits; its message from the logs on error.
pub fn restricted(c: Container) -> Container {
    let q = |s: &str| Quantity(s.to_string());
    Container {
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(DEFAULT_RUN_AS_USER),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), q("10m")),
                ("memory".into(), q("16Mi")),
            ])),
            limits: Some(BTreeMap::from([
                ("cpu".into(), q("100m")),
                ("memory".into(), q("32Mi")),
            ])),
            ..ResourceRequirements::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..c
    }
}
