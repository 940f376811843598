//! One version, one image name: Cargo.toml's version is the chart's version and appVersion, the
//! image tag everywhere, and what `--version` prints with the commit; the chart's and the
//! manifests' image is the published one; the release tooling agrees with itself.

use std::process::Command;

use kafka_expose::names::{IMAGE_REPOSITORY, KUBECTL_PLUGIN};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const BIN: &str = env!("CARGO_BIN_EXE_kafka-expose");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap()
}

fn yaml_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"'))
}

#[test]
fn cargo_the_chart_and_the_manifests_carry_one_version_and_the_published_image() {
    let chart = read("deploy/helm/kafka-expose/Chart.yaml");
    assert_eq!(yaml_field(&chart, "version"), Some(VERSION));
    assert_eq!(yaml_field(&chart, "appVersion"), Some(VERSION));

    let values = read("deploy/helm/kafka-expose/values.yaml");
    let image = values.split("\nimage:\n").nth(1).unwrap();
    let field = |k: &str| {
        yaml_field(
            image
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("\n")
                .as_str(),
            k,
        )
        .map(str::to_string)
    };
    assert_eq!(field("repository").as_deref(), Some(IMAGE_REPOSITORY));
    // The tag follows appVersion; the release workflow fills the digest in (release/pin-digest.sh).
    assert_eq!(field("tag").as_deref(), Some(""));
    assert_eq!(field("digest").as_deref(), Some(""));

    let manifests = read("deploy/manifests/deployment.yaml");
    assert!(
        manifests.contains(&format!("image: {IMAGE_REPOSITORY}:{VERSION}\n")),
        "deploy/manifests runs {IMAGE_REPOSITORY}:{VERSION}"
    );
    assert_eq!(
        kafka_expose::config::default_patcher_image(),
        format!("{IMAGE_REPOSITORY}:{VERSION}")
    );
    // The published name is the repository's, where the release workflow pushes
    // (ghcr.io/${{ github.repository }}).
    let cargo = read("Cargo.toml");
    let repo = yaml_field(&cargo.replace(" = ", ":"), "repository")
        .unwrap()
        .to_string();
    assert_eq!(
        repo.strip_prefix("https://github.com/")
            .map(|r| format!("ghcr.io/{r}")),
        Some(IMAGE_REPOSITORY.to_string())
    );
    assert!(
        read(".github/workflows/release.yml").contains("IMAGE: ghcr.io/${{ github.repository }}")
    );
    // The Dockerfile describes the same image: its version, entrypoint and user.
    let dockerfile = read("Dockerfile");
    for line in [
        format!("org.opencontainers.image.version=\"{VERSION}\""),
        "ENTRYPOINT [\"/usr/bin/kafka-expose\"]".to_string(),
        "USER 65532:65532".to_string(),
    ] {
        assert!(dockerfile.contains(&line), "the Dockerfile has {line}");
    }
    assert!(read("image/assemble.py").contains("\"Entrypoint\": [\"/usr/bin/kafka-expose\"]"));
    // image/build.sh labels the image with the same source.
    assert!(read("image/assemble.py").contains(&format!("REPO = \"{repo}\"")));
}

#[test]
fn version_prints_the_version_and_the_commit() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(ROOT)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let commit = std::env::var("KAFKA_EXPOSE_COMMIT")
        .ok()
        .or(head)
        .unwrap_or("unknown".into());
    assert_eq!(
        text.trim(),
        format!("kafka-expose {VERSION} (commit {commit})")
    );
}

#[test]
fn release_version_sh_accepts_the_versions_tag_and_refuses_another() {
    let script = format!("{ROOT}/release/version.sh");
    let ok = Command::new(&script)
        .arg(format!("v{VERSION}"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), VERSION);
    let bad = Command::new(&script).arg("v999.0.0").output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("the tag is 'v999.0.0'"));
}

#[test]
fn the_cli_archives_hold_the_kubectl_plugin_and_krew_names_each_with_its_checksum() {
    let dist = std::env::temp_dir().join(format!("kx-release-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dist);
    // A small stand-in for the release binary: the debug one is too big to compress four times.
    std::fs::create_dir_all(&dist).unwrap();
    let bin = dist.join("stand-in");
    std::fs::write(&bin, "#!/bin/sh\n").unwrap();
    for name in ["linux-amd64", "linux-arm64", "darwin-amd64", "darwin-arm64"] {
        let out = Command::new(format!("{ROOT}/release/package-cli.sh"))
            .arg(&bin)
            .arg(name)
            .arg(&dist)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(dist.join("kafka-expose-linux-amd64.tar.gz"))
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    for f in [
        "./kafka-expose",
        &format!("./{KUBECTL_PLUGIN}"),
        "./LICENSE",
        "./README.md",
    ] {
        assert!(listing.lines().any(|l| l == f), "{f} in {listing}");
    }
    let krew = Command::new(format!("{ROOT}/release/krew.sh"))
        .args([VERSION, "https://example.invalid/d"])
        .arg(&dist)
        .output()
        .unwrap();
    assert!(
        krew.status.success(),
        "{}",
        String::from_utf8_lossy(&krew.stderr)
    );
    let docs =
        kafka_expose::offline::read_documents(&String::from_utf8(krew.stdout).unwrap()).unwrap();
    let plugin = &docs[0];
    assert_eq!(plugin["kind"], "Plugin");
    assert_eq!(plugin["metadata"]["name"], "kafka-expose");
    assert_eq!(plugin["spec"]["version"], format!("v{VERSION}"));
    let platforms = plugin["spec"]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 4);
    for p in platforms {
        assert_eq!(p["bin"], KUBECTL_PLUGIN);
        let uri = p["uri"].as_str().unwrap();
        let file = dist.join(uri.rsplit('/').next().unwrap());
        let sum = Command::new("sha256sum").arg(&file).output().unwrap();
        let sum = String::from_utf8(sum.stdout).unwrap();
        assert_eq!(p["sha256"].as_str(), sum.split_whitespace().next(), "{uri}");
    }
    let _ = std::fs::remove_dir_all(&dist);
}
