//! `kafka-expose-launch`: the launch adapter's binary, static, so that it runs in any broker
//! image. Mounted over the image's `kafka-server-start.sh`, it makes kafka-expose's edit on the
//! file that script is given and then runs the image's own script on the result
//! ([`kafka_expose_kafka::launch`]). Invoked under its own name it is one of the two init steps
//! that set it up:
//!
//! - `kafka-expose-launch install DIR` (on kafka-expose's image): copies itself into DIR;
//! - `kafka-expose-launch save SCRIPT DIR` (on the broker's image): copies the image's own script
//!   into DIR, where the launcher finds it.
//!
//! Neither init step fails over the broker's image: a script that is not there is reported and
//! left to the start, where the chart's own `exec` of it would have failed the same way.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kafka_expose_kafka::launch::{self, EDITED, LAUNCHER, ORIGINAL, Settings};

/// The container's termination message: the kubelet's default path, or the one the chart set.
fn termination_log() -> PathBuf {
    std::env::var_os(kafka_expose_kafka::envs::TERMINATION_MESSAGE_PATH)
        .map_or_else(|| PathBuf::from("/dev/termination-log"), PathBuf::from)
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let arg0 = argv.next().unwrap_or_default();
    let args: Vec<OsString> = argv.collect();
    if Path::new(&arg0).file_name().is_some_and(|n| n == LAUNCHER) {
        return tool(&args);
    }
    start(&args)
}

fn say(message: &str) {
    eprintln!("kafka-expose-launch: {message}");
}

/// The broker's start, in place of the image's script.
fn start(args: &[OsString]) -> ExitCode {
    let settings = Settings::from_vars(|k| std::env::var(k).ok());
    let plan = launch::plan(args, &settings, |p| std::fs::read_to_string(p));
    let mut args = plan.args;
    for note in &plan.notes {
        say(note);
    }
    if let Some((path, text)) = &plan.write
        && let Err(e) = write_private(path, text)
    {
        let message = format!(
            "{}writing {}: {e}",
            kafka_expose_kafka::KEPT_MARK,
            path.display()
        );
        say(&message);
        let _ = std::fs::write(termination_log(), &message);
        args = std::env::args_os().skip(1).collect();
    }
    if let Some(kept) = &plan.kept {
        // Read by the kubelet only if the broker stops; the log has it from the start.
        let _ = std::fs::write(termination_log(), kept);
    }
    let (dir, script) = match &settings {
        Ok(s) => (s.dir.clone(), s.script.clone().into_os_string()),
        Err(_) => {
            let dir = std::env::var_os(kafka_expose_kafka::envs::LAUNCH_DIR);
            let script = std::env::var_os(kafka_expose_kafka::envs::LAUNCH_SCRIPT);
            match (dir, script) {
                (Some(d), Some(s)) => (PathBuf::from(d), s),
                _ => {
                    say(
                        "cannot find the image's own start script: the launch directory or the script's path is not set",
                    );
                    return ExitCode::from(127);
                }
            }
        }
    };
    let original = dir.join(ORIGINAL);
    let head = match read_head(&original) {
        Ok(h) => h,
        Err(e) => {
            say(&format!(
                "the image's own start script {} was not saved ({}: {e}); the image has no such script",
                script.to_string_lossy(),
                original.display()
            ));
            return ExitCode::from(127);
        }
    };
    let exec = launch::exec_of(&original, &head, &script, &args);
    let e = std::process::Command::new(&exec.program)
        .arg0(&exec.arg0)
        .args(&exec.args)
        .exec();
    say(&format!("running {}: {e}", exec.program.display()));
    ExitCode::from(127)
}

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = vec![0; 256];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    head.truncate(n);
    Ok(head)
}

/// Writes the edited configuration readable by its owner only: it may hold the chart's JAAS
/// passwords.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

fn tool(args: &[OsString]) -> ExitCode {
    let words: Vec<&str> = args.iter().map(|a| a.to_str().unwrap_or("")).collect();
    match words.as_slice() {
        ["install", dir] => {
            let to = Path::new(dir).join(LAUNCHER);
            // Where this binary is: /proc/self/exe, else the path it was started by (the pod's
            // command names it absolutely), for a root with no /proc.
            let me = std::env::current_exe().or_else(|e| {
                std::env::args_os()
                    .next()
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute())
                    .ok_or(e)
            });
            let copied = me.and_then(|me| copy_with_mode(&me, &to, 0o755));
            match copied {
                Ok(()) => {
                    say(&format!("installed {}", to.display()));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    say(&format!("installing {}: {e}", to.display()));
                    ExitCode::FAILURE
                }
            }
        }
        ["save", script, dir] => {
            let to = Path::new(dir).join(ORIGINAL);
            match copy_with_mode(Path::new(script), &to, 0o755) {
                Ok(()) => say(&format!("saved the image's {script} as {}", to.display())),
                // Not a reason to stop the pod: the chart's own exec of it would fail the same.
                Err(e) => say(&format!("the image has no {script} to save ({e})")),
            }
            let _ = std::fs::remove_file(Path::new(dir).join(EDITED));
            ExitCode::SUCCESS
        }
        _ => {
            say(&format!(
                "usage: {LAUNCHER} install DIR | {LAUNCHER} save SCRIPT DIR; under any other name it stands in for kafka-server-start.sh"
            ));
            ExitCode::from(2)
        }
    }
}

fn copy_with_mode(from: &Path, to: &Path, mode: u32) -> std::io::Result<()> {
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
}
