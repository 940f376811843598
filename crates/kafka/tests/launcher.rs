//! The launcher binary as a pod runs it, with a real shell: the init steps `install` and `save`,
//! then the chart's script `exec`ing the image's `kafka-server-start.sh`, which is the launcher
//! (the pod mounts it over that path; here it is a copy under that name), and the image's own
//! script running on what the launcher gives it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kafka_expose_kafka::{KEPT_MARK, envs};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_kafka-expose-launch");

/// The image's own script, as apache/kafka's: everything relative to `$(dirname $0)`.
const START: &str = "#!/bin/bash\nif [ $# -lt 1 ]; then echo \"USAGE: $0 server.properties\"; exit 1; fi\nbase_dir=$(dirname $0)\nexec $base_dir/kafka-run-class.sh -name kafkaServer kafka.Kafka \"$@\"\n";
/// Stands in for the JVM: records its arguments and the file it was given.
const RUN_CLASS: &str =
    "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$OUT/args\"\ncp \"$4\" \"$OUT/config\"\n";

const CONFIG: &str = "process.roles=broker,controller\ncontroller.listener.names=CONTROLLER\nlisteners=CLIENT://:9092,INTERNAL://:9094,CONTROLLER://:9093\nlistener.security.protocol.map=CLIENT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT\ninter.broker.listener.name=INTERNAL\n";

/// One pod at a time: a file this process writes and then runs is "busy" (ETXTBSY) while
/// another test's child, forked in between, still holds the write descriptor.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Pod {
    root: PathBuf,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Pod {
    fn new(name: &str) -> Self {
        let one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let root = std::env::temp_dir().join(format!("kx-launcher-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["image/opt/kafka/bin", "launch", "shadow", "out", "cfg"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        write_exec(
            &root.join("image/opt/kafka/bin/kafka-server-start.sh"),
            START,
        );
        write_exec(
            &root.join("image/opt/kafka/bin/kafka-run-class.sh"),
            RUN_CLASS,
        );
        Self { root, _one: one }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The two init steps, then the chart's script.
    fn start(&self, config: &str, script: &str) -> std::process::Output {
        std::fs::write(self.p("cfg/server.properties"), config).unwrap();
        let install = Command::new(LAUNCHER)
            .args(["install".as_ref(), self.p("launch").as_os_str()])
            .status()
            .unwrap();
        assert!(install.success());
        let installed = self.p("launch/kafka-expose-launch");
        let save = Command::new(&installed)
            .arg("save")
            .arg(self.p("image/opt/kafka/bin/kafka-server-start.sh"))
            .arg(self.p("launch"))
            .status()
            .unwrap();
        assert!(save.success());
        // The mount: the launcher under the script's name.
        std::fs::hard_link(&installed, self.p("shadow/kafka-server-start.sh")).unwrap();
        Command::new("sh")
            .arg("-ec")
            .arg(script)
            .env("SHADOW", self.p("shadow/kafka-server-start.sh"))
            .env("CFG", self.p("cfg/server.properties"))
            .env("OUT", self.p("out"))
            .env(envs::LAUNCH_DIR, self.p("launch"))
            .env(
                envs::LAUNCH_SCRIPT,
                self.p("image/opt/kafka/bin/kafka-server-start.sh"),
            )
            .env(
                envs::TERMINATION_MESSAGE_PATH,
                self.p("out/termination-log"),
            )
            .env(envs::LISTENER_NAME, "EXTERNAL")
            .env(envs::CONTAINER_PORT, "9095")
            .env(envs::EXTERNAL_HOST, "203.0.113.7")
            .env(envs::EXTERNAL_PORT, "31092")
            .output()
            .unwrap()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_images_script_runs_from_its_own_directory_on_the_edited_file() {
    let pod = Pod::new("edit");
    let out = pod.start(
        CONFIG,
        "echo 'node.id=0' >> \"$CFG\"\nexec \"$SHADOW\" \"$CFG\" --override log.retention.hours=1",
    );
    assert!(out.status.success(), "{out:?}");
    let args = read(pod.p("out/args"));
    let edited = pod.p("launch/server.properties");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "-name",
            "kafkaServer",
            "kafka.Kafka",
            edited.to_str().unwrap()
        ],
        "the overrides are in the file, the file is the edited copy"
    );
    let config = read(pod.p("out/config"));
    for want in [
        "listeners=CLIENT://:9092,INTERNAL://:9094,CONTROLLER://:9093,EXTERNAL://:9095",
        "EXTERNAL://203.0.113.7:31092",
        "EXTERNAL:SASL_PLAINTEXT",
        "node.id=0",
        "log.retention.hours=1",
    ] {
        assert!(config.contains(want), "{want} not in:\n{config}");
    }
    let mode = std::fs::metadata(&edited).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the edited file may hold passwords");
    assert_eq!(
        read(pod.p("cfg/server.properties")),
        format!("{CONFIG}node.id=0\n"),
        "the chart's file is not touched"
    );
}

#[test]
fn a_listener_the_chart_already_has_is_kept_and_the_broker_starts_as_the_chart_made_it() {
    let pod = Pod::new("kept");
    let config = format!(
        "{CONFIG}listeners=CLIENT://:9092,EXTERNAL://:9999\nadvertised.listeners=EXTERNAL://lb:9999\n"
    );
    let out = pod.start(&config, "exec \"$SHADOW\" \"$CFG\"");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(KEPT_MARK), "{stderr}");
    assert!(stderr.contains("adapter=adopt"), "{stderr}");
    let message = read(pod.p("out/termination-log"));
    assert!(message.starts_with(KEPT_MARK), "{message}");
    let args = read(pod.p("out/args"));
    assert!(args.ends_with(&format!("{}\n", pod.p("cfg/server.properties").display())));
    assert_eq!(read(pod.p("out/config")), config);
}

#[test]
fn without_a_file_the_images_script_answers_as_it_always_did() {
    let pod = Pod::new("usage");
    let out = pod.start(CONFIG, "exec \"$SHADOW\"");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("USAGE: ") && stdout.contains("image/opt/kafka/bin/kafka-server-start.sh"),
        "$0 is the script's own path: {stdout}"
    );
}
