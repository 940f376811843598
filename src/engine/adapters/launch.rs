//! The **launch** adapter: the chart's own start script writes the broker's whole configuration
//! and then runs the distribution's `kafka-server-start.sh` on it (the charts on the official
//! `apache/kafka` image). No edit made before the script runs survives it, and the file exists
//! only inside the running container, so kafka-expose acts at that last step.
//!
//! The image's start script, at the path fixed for its image family ([`FAMILIES`]), is shadowed
//! by the static `kafka-expose-launch` (crates/kafka): a `subPath` mount from an `emptyDir`. Two
//! init containers prepare that volume:
//! 1. [`INSTALL_CONTAINER`], on kafka-expose's image, copies the launcher into it;
//! 2. [`SAVE_CONTAINER`], on the broker's own image (so it sees the image's script), copies the
//!    script beside it.
//!
//! At start the launcher edits a copy of the file the chart's script passes (with its
//! `--override` settings folded in), with the same edit as `patch-properties`, and runs the
//! image's own script on it from its own path ([`crate::kafka::launch`]). The chart's ConfigMaps
//! and files are never edited.

use k8s_openapi::api::core::v1::{Container, PodSpec, VolumeMount};

use super::properties::restricted;
use crate::kafka::launch::LAUNCHER;
use crate::names::{INSTALL_CONTAINER, LAUNCH_MOUNT, LAUNCH_VOLUME, SAVE_CONTAINER};

/// The image families whose start script kafka-expose knows: a repository name (the last two
/// path segments of the image, without registry, tag or digest) and the script's path in it.
pub const FAMILIES: [(&str, &str); 6] = [
    ("apache/kafka", "/opt/kafka/bin/kafka-server-start.sh"),
    (
        "bitnami/kafka",
        "/opt/bitnami/kafka/bin/kafka-server-start.sh",
    ),
    (
        "bitnamilegacy/kafka",
        "/opt/bitnami/kafka/bin/kafka-server-start.sh",
    ),
    (
        "bitnamisecure/kafka",
        "/opt/bitnami/kafka/bin/kafka-server-start.sh",
    ),
    ("confluentinc/cp-kafka", "/usr/bin/kafka-server-start"),
    ("confluentinc/cp-server", "/usr/bin/kafka-server-start"),
];

/// Where the launch adapter acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The image's start script, shadowed by the launcher.
    pub script: String,
    /// The family it was found for.
    pub family: &'static str,
    /// How the chart starts it, for people: the command's text from the launch on, or the
    /// ConfigMap script the command runs.
    pub start: String,
}

/// What [`find`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Target(Target),
    /// The broker is started this way, but the adapter cannot act on it, and why.
    Unusable(String),
    Nothing,
}

/// The repository of an image reference: registry, tag and digest removed, and Docker Hub's
/// `library/` and `docker.io/` prefixes.
fn repository(image: &str) -> String {
    let name = image.split('@').next().unwrap_or_default();
    let name = match name.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => name,
    };
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        parts.remove(0);
    }
    parts.join("/").to_ascii_lowercase()
}

/// The family of `image` and its start script's path.
pub fn family_of(image: &str) -> Option<(&'static str, &'static str)> {
    let repo = repository(image);
    FAMILIES
        .iter()
        .find(|(family, _)| repo == *family || repo.ends_with(&format!("/{family}")))
        .copied()
}

fn known_families() -> String {
    FAMILIES
        .iter()
        .map(|(f, p)| format!("{f} ({p})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Looks at how the broker is started. `launched` is the `kafka-server-start` path the
/// container's inline script runs, as written (see [`super::adopt::ScriptListeners`]).
pub fn find(spec: &PodSpec, c: &Container, launched: Option<&str>) -> Found {
    let image = c.image.as_deref().unwrap_or_default();
    let start = match launched {
        Some(path) => start_text(c, path),
        None => match configmap_script(spec, c) {
            Some(s) => s,
            None => return Found::Nothing,
        },
    };
    let Some((family, script)) = family_of(image) else {
        let looked = launched.unwrap_or("kafka-server-start.sh");
        return Found::Unusable(format!(
            "the broker is started by {start}, and kafka-expose would stand in for {looked} at that launch, but image {image} is not of a family whose start script it knows, so it cannot tell where that script is in the image; known: {}",
            known_families()
        ));
    };
    if let Some(path) = launched {
        let path = resolve(c, path);
        let name = |p: &str| p.rsplit('/').next().unwrap_or_default().to_string();
        if path.starts_with('/') && path != script || name(&path) != name(script) {
            return Found::Unusable(format!(
                "the broker is started by {start}, which runs {path}, but image {image} ({family}) starts the broker with {script}; kafka-expose stands in only for the image's own start script"
            ));
        }
    }
    Found::Target(Target {
        script: script.to_string(),
        family,
        start,
    })
}

/// A relative launch path resolved against the container's working directory.
fn resolve(c: &Container, path: &str) -> String {
    if path.starts_with('/') || path.starts_with('$') {
        return path.to_string();
    }
    match c.working_dir.as_deref() {
        Some(dir) => format!(
            "{}/{}",
            dir.trim_end_matches('/'),
            path.trim_start_matches("./")
        ),
        None => path.to_string(),
    }
}

/// The launch as the container writes it: its shell script's line that runs `path`, or its
/// command in exec form.
fn start_text(c: &Container, path: &str) -> String {
    let words: Vec<&str> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(String::as_str)
        .collect();
    let shell = words.len() >= 3
        && words[0].ends_with("sh")
        && words[1].starts_with('-')
        && words[1].contains('c');
    let short = |s: &str| -> String { s.chars().take(160).collect() };
    if !shell {
        return format!("the container's command (`{}`)", short(&words.join(" ")));
    }
    let text = words[2..].join("\n");
    let line = text
        .lines()
        .find(|l| l.contains(path))
        .map(str::trim)
        .unwrap_or(path);
    format!("the container's script (`{}`)", short(line))
}

/// The command runs a script file from a ConfigMap volume: kafka-expose does not read the
/// ConfigMap, so the launch is assumed, and said so.
fn configmap_script(spec: &PodSpec, c: &Container) -> Option<String> {
    let words = c.command.iter().flatten().chain(c.args.iter().flatten());
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    for word in words.take(3) {
        if !word.starts_with('/') || word.contains(char::is_whitespace) {
            continue;
        }
        let Some(m) = mounts
            .iter()
            .filter(|m| word.starts_with(&format!("{}/", m.mount_path.trim_end_matches('/'))))
            .max_by_key(|m| m.mount_path.len())
        else {
            continue;
        };
        let cm = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .and_then(|v| v.config_map.as_ref());
        if let Some(cm) = cm {
            return Some(format!(
                "script {word} from ConfigMap {} (kafka-expose does not read it: if it does not end in the image's start script, the launcher never runs and no listener is added)",
                cm.name
            ));
        }
    }
    None
}

/// The first init container: the launcher copied from kafka-expose's image into the volume.
pub fn install_container(image: &str) -> Container {
    restricted(Container {
        name: INSTALL_CONTAINER.to_string(),
        image: Some(image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec![format!("/usr/bin/{LAUNCHER}")]),
        args: Some(vec!["install".into(), LAUNCH_MOUNT.into()]),
        volume_mounts: Some(vec![mount()]),
        ..Container::default()
    })
}

/// The second: the image's own start script copied beside it, on the broker's own image, as
/// the broker's user (so that the broker may read it), restricted otherwise.
pub fn save_container(broker: &Container, target: &Target) -> Container {
    let mut c = restricted(Container {
        name: SAVE_CONTAINER.to_string(),
        image: broker.image.clone(),
        image_pull_policy: broker.image_pull_policy.clone(),
        command: Some(vec![format!("{LAUNCH_MOUNT}/{LAUNCHER}")]),
        args: Some(vec![
            "save".into(),
            target.script.clone(),
            LAUNCH_MOUNT.into(),
        ]),
        volume_mounts: Some(vec![mount()]),
        ..Container::default()
    });
    let user = broker
        .security_context
        .as_ref()
        .map(|s| (s.run_as_user, s.run_as_group));
    if let (Some(sc), Some((user, group))) = (c.security_context.as_mut(), user) {
        // The pod's user applies when the broker names none.
        sc.run_as_user = user.filter(|u| *u != 0);
        sc.run_as_group = group;
    }
    c
}

/// The volume in the init containers and the broker.
pub fn mount() -> VolumeMount {
    VolumeMount {
        name: LAUNCH_VOLUME.to_string(),
        mount_path: LAUNCH_MOUNT.to_string(),
        ..VolumeMount::default()
    }
}

/// The launcher over the image's script, in the broker.
pub fn shadow(target: &Target) -> VolumeMount {
    VolumeMount {
        name: LAUNCH_VOLUME.to_string(),
        mount_path: target.script.clone(),
        sub_path: Some(LAUNCHER.to_string()),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(image: &str, command: serde_json::Value) -> PodSpec {
        serde_json::from_value(serde_json::json!({
            "containers": [{"name": "kafka", "image": image, "command": command,
                "volumeMounts": [{"name": "scripts", "mountPath": "/scripts"}]}],
            "volumes": [{"name": "scripts", "configMap": {"name": "kafka-scripts"}}]
        }))
        .unwrap()
    }

    #[test]
    fn a_start_script_from_a_config_map_is_assumed_to_end_in_the_images_script_and_said_so() {
        let spec = pod(
            "apache/kafka:4.1.0",
            serde_json::json!(["/scripts/start.sh"]),
        );
        let Found::Target(t) = find(&spec, &spec.containers[0], None) else {
            panic!("{:?}", find(&spec, &spec.containers[0], None));
        };
        assert_eq!(t.script, "/opt/kafka/bin/kafka-server-start.sh");
        assert!(
            t.start.contains("ConfigMap kafka-scripts") && t.start.contains("does not read it")
        );
        // Not a ConfigMap's script, nor an inline launch: nothing to stand in for.
        let spec = pod("apache/kafka:4.1.0", serde_json::json!(["/usr/bin/run"]));
        assert_eq!(find(&spec, &spec.containers[0], None), Found::Nothing);
        // Of an unknown family: refused, naming the image.
        let spec = pod("example/kafka:1", serde_json::json!(["/scripts/start.sh"]));
        let Found::Unusable(why) = find(&spec, &spec.containers[0], None) else {
            panic!()
        };
        assert!(
            why.contains("image example/kafka:1 is not of a family"),
            "{why}"
        );
    }

    #[test]
    fn families_are_found_whatever_the_registry_tag_or_digest() {
        for image in [
            "apache/kafka:4.3.1",
            "docker.io/apache/kafka:4.3.1@sha256:77e3df9054047a88b520d0cc46e16696d3b22022e1d580aeccd2632df6532837",
            "mirror.example:5000/apache/kafka",
        ] {
            assert_eq!(
                family_of(image),
                Some(("apache/kafka", "/opt/kafka/bin/kafka-server-start.sh")),
                "{image}"
            );
        }
        assert_eq!(
            family_of("bitnamilegacy/kafka:3.9").unwrap().0,
            "bitnamilegacy/kafka"
        );
        assert_eq!(family_of("apache/kafka-native:4.0.0"), None);
        assert_eq!(family_of("solsson/kafka:2.4"), None);
        assert_eq!(
            family_of("confluentinc/cp-kafka:7.6.0").unwrap().1,
            "/usr/bin/kafka-server-start"
        );
    }
}
