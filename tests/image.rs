//! The released image, as a kubelet would run it: unpacked from the OCI archive that
//! `image/build.sh` writes (KAFKA_EXPOSE_IMAGE), its binary run from inside the root as uid
//! 65532, natively on amd64 and under qemu-user on arm64.
//!
//! Reading the archive back goes through tools that are not the builder: skopeo picks each
//! architecture out of the image index, and umoci unpacks it and writes the runtime spec a
//! container runtime would start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn archive() -> PathBuf {
    let p = std::env::var_os("KAFKA_EXPOSE_IMAGE")
        .map(PathBuf::from)
        .expect("KAFKA_EXPOSE_IMAGE names the archive image/build.sh wrote (tests/run.sh sets it)");
    assert!(p.is_file(), "{} is not there", p.display());
    p
}

/// The commit the image was built from: as build.rs takes it, `KAFKA_EXPOSE_COMMIT`, else HEAD.
fn commit() -> String {
    std::env::var("KAFKA_EXPOSE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            String::from_utf8(run(Command::new("git").args(["rev-parse", "HEAD"])).stdout)
                .unwrap()
                .trim()
                .to_string()
        })
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One architecture's image, unpacked.
struct Unpacked {
    arch: &'static str,
    dir: PathBuf,
    /// The runtime spec umoci wrote from the image's config.
    spec: Value,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Unpacked {
    fn new(arch: &'static str) -> Self {
        let dir = std::env::temp_dir().join(format!("kx-image-{arch}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let src = format!("oci-archive:{}:{VERSION}", archive().display());
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--override-arch", arch, &src])
            .arg(format!("oci:{}:x", dir.join("layout").display())));
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:x", dir.join("layout").display()))
            .arg(dir.join("bundle")));
        let spec = serde_json::from_slice(&std::fs::read(dir.join("bundle/config.json")).unwrap())
            .unwrap();
        let u = Unpacked { arch, dir, spec };
        if arch == "arm64" {
            // Static, so it runs inside the root; it loads the arm64 dynamic loader from there.
            let qemu = u.root().join("qemu-aarch64-static");
            std::fs::copy("/usr/bin/qemu-aarch64-static", &qemu).unwrap();
        }
        u
    }

    fn root(&self) -> PathBuf {
        self.dir.join("bundle/rootfs")
    }

    /// The image's own command line (entrypoint and the given arguments), run from inside the
    /// root as the image's user.
    fn command(&self, args: &[&str]) -> Command {
        let process = &self.spec["process"];
        let user = format!("{}:{}", process["user"]["uid"], process["user"]["gid"]);
        let entrypoint = process["args"][0].as_str().unwrap().to_string();
        let mut c = Command::new("chroot");
        c.arg(format!("--userspec={user}")).arg(self.root());
        if self.arch == "arm64" {
            c.arg("/qemu-aarch64-static");
        }
        c.arg(entrypoint).args(args).env_clear();
        for e in process["env"].as_array().unwrap() {
            if let Some((k, v)) = e.as_str().unwrap().split_once('=') {
                c.env(k, v);
            }
        }
        c.env("HOME", "/home/nonroot");
        c
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn config_of(arch: &str) -> Value {
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--config",
        "--override-arch",
        arch,
        &format!("oci-archive:{}:{VERSION}", archive().display()),
    ]));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_index_holds_amd64_and_arm64_with_the_user_entrypoint_and_labels() {
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}:{VERSION}", archive().display()),
    ]));
    let index: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"], m["platform"]["architecture"]).replace('"', "")
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let commit = commit();
    for arch in ["amd64", "arm64"] {
        let cfg = config_of(arch);
        assert_eq!(cfg["architecture"], arch);
        let c = &cfg["config"];
        assert_eq!(c["User"], "65532:65532");
        assert_eq!(c["Entrypoint"], json!(["/usr/bin/kafka-expose"]));
        let labels = &c["Labels"];
        assert_eq!(
            labels["org.opencontainers.image.source"],
            "https://github.com/kafka-expose/kafka-expose"
        );
        assert_eq!(labels["org.opencontainers.image.version"], VERSION);
        assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
        assert_eq!(labels["org.opencontainers.image.revision"], commit.as_str());
    }
}

/// Runs `serve --dev-certs` in the image until /readyz answers, then asks it a review with curl,
/// trusting the CA it wrote inside the root.
fn serve_answers_a_review(u: &Unpacked) {
    let (port, admin) = (support::net::free_port(), support::net::free_port());
    let mut child: Child = u
        .command(&[
            "serve",
            "--dev-certs",
            "--cert-dir",
            "/tmp/certs",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(&mut child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{admin}/readyz"))
            .output()
            .unwrap();
        if out.stdout == b"200" {
            break;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.0.stderr.take().unwrap().read_to_string(&mut err);
            panic!("{}: serve exited with {status}: {err}", u.arch);
        }
        assert!(
            Instant::now() < deadline,
            "{}: serve never became ready",
            u.arch
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pod = support::https::exposed_broker_pod();
    let body = u.dir.join("review.json");
    std::fs::write(
        &body,
        serde_json::to_vec(&support::https::review("image", "", "Pod", "CREATE", &pod)).unwrap(),
    )
    .unwrap();
    let out = run(Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(u.root().join("tmp/certs/ca.crt"))
        .args(["-H", "Content-Type: application/json", "--data"])
        .arg(format!("@{}", body.display()))
        .arg(format!("https://localhost:{port}/mutate")));
    let (resp, patch) = support::https::response_of(&out.stdout);
    assert_eq!(resp["uid"], "image", "{}", u.arch);
    assert_eq!(resp["allowed"], true, "{}", u.arch);
    assert!(patch.is_some_and(|p| p.as_array().is_some_and(|a| a.len() > 3)));
}

fn runs_in_the_image(arch: &'static str) {
    let u = Unpacked::new(arch);
    assert_eq!(u.spec["process"]["user"]["uid"], 65532);
    assert_eq!(u.spec["process"]["user"]["gid"], 65532);
    // Nothing but the binary runs: no shell to exec into.
    for shell in ["bin/sh", "usr/bin/sh", "bin/bash"] {
        assert!(!u.root().join(shell).exists(), "{arch}: {shell}");
    }
    assert!(
        u.root()
            .join("etc/ssl/certs/ca-certificates.crt")
            .metadata()
            .unwrap()
            .len()
            > 100_000
    );

    let v = u.output(&["--version"]);
    let commit = commit();
    assert!(v.status.success(), "{arch}: {}", text(&v));
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("kafka-expose {VERSION} (commit {commit})"),
        "{arch}"
    );

    serve_answers_a_review(&u);

    // gate: the node's address is there, so it passes; an empty file times out with a reason.
    let tmp = u.root().join("tmp");
    std::fs::write(tmp.join("external-host"), "198.51.100.7\n").unwrap();
    let g = u.output(&["gate", "--file", "/tmp/external-host", "--timeout", "10s"]);
    assert!(g.status.success(), "{arch}: {}", text(&g));
    std::fs::write(tmp.join("empty-host"), "").unwrap();
    let g = u.output(&[
        "gate",
        "--file",
        "/tmp/empty-host",
        "--timeout",
        "1s",
        "--interval",
        "100ms",
    ]);
    assert!(!g.status.success(), "{arch}: the gate waits for an address");
    assert!(!text(&g).contains("panicked"), "{arch}: {}", text(&g));

    // patch-properties edits a file the image's user can write, as in the broker's volume.
    let props = tmp.join("server.properties");
    std::fs::write(
        &props,
        "listeners=PLAINTEXT://:9092\nadvertised.listeners=PLAINTEXT://kafka-0.kafka:9092\n",
    )
    .unwrap();
    set_mode(&props, 0o666);
    let p = u.output(&[
        "patch-properties",
        "--file",
        "/tmp/server.properties",
        "--container-port",
        "9094",
        "--advertised-host",
        "198.51.100.7",
        "--advertised-port",
        "31000",
    ]);
    assert!(p.status.success(), "{arch}: {}", text(&p));
    let after = std::fs::read_to_string(&props).unwrap();
    assert!(
        after.contains("EXTERNAL://198.51.100.7:31000") && after.contains("EXTERNAL://:9094"),
        "{arch}: {after}"
    );

    the_launcher_is_static(&u);
}

/// The launch adapter's step is static: copied out of the image into a root that holds nothing
/// else (no libc, no loader, as in a broker image of another libc), it runs, and `install` copies
/// it as the init step does.
fn the_launcher_is_static(u: &Unpacked) {
    let arch = u.arch;
    let bare = u.dir.join("bare");
    std::fs::create_dir_all(bare.join("kx")).unwrap();
    std::fs::copy(
        u.root().join("usr/bin/kafka-expose-launch"),
        bare.join("kafka-expose-launch"),
    )
    .unwrap();
    set_mode(&bare.join("kx"), 0o777);
    let mut c = Command::new("chroot");
    c.arg("--userspec=65532:65532").arg(&bare);
    if arch == "arm64" {
        std::fs::copy(
            "/usr/bin/qemu-aarch64-static",
            bare.join("qemu-aarch64-static"),
        )
        .unwrap();
        c.arg("/qemu-aarch64-static");
    }
    let o = c
        .args(["/kafka-expose-launch", "install", "/kx"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    assert!(o.status.success(), "{arch}: {}", text(&o));
    assert!(bare.join("kx/kafka-expose-launch").is_file(), "{arch}");
    assert!(
        !bare.join("lib").exists() && !bare.join("lib64").exists(),
        "{arch}: the root has no libc"
    );
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_amd64_binary_runs_from_the_unpacked_image_as_65532() {
    runs_in_the_image("amd64");
}

#[test]
fn the_arm64_binary_runs_from_the_unpacked_image_under_qemu_user() {
    runs_in_the_image("arm64");
}
