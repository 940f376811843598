//! The launch adapter's step: what runs in the broker's container in place of the image's
//! `kafka-server-start.sh`.
//!
//! Charts on the official `apache/kafka` image write the whole `server.properties` in the
//! container's own start script (copied from a ConfigMap, with lines appended) and then `exec`
//! the distribution's `kafka-server-start.sh <file> [--override k=v …]`. Whatever the script did
//! before, the file it passes there, with the overrides, is the broker's final configuration. So
//! kafka-expose shadows that one script (a `subPath` mount of this binary over its path) and makes
//! its edit at that last step:
//!
//! 1. the `--override` settings are folded into a copy of the file, as Kafka applies them (they
//!    win over the file), so that the edit sees the configuration the broker would run with;
//! 2. [`properties::patch_or_keep`] adds the external listener, the same edit as
//!    `patch-properties` and the env adapter ([`crate::external`]);
//! 3. the image's own script, copied beside this binary by an init container on the broker's
//!    image, runs on the edited copy, with `$0` its original path, so that its
//!    `$(dirname $0)/kafka-run-class.sh` resolves as before.
//!
//! It never stops the broker over the chart's configuration: when the file cannot be read, or
//! already holds the listener or its port, the original script runs on the original arguments,
//! and the reason goes to the log and the termination message, starting with [`KEPT_MARK`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::listeners::SecurityProtocol;
use crate::properties::{self, Request};
use crate::{KEPT_MARK, envs};

/// The launcher's own file name in [`envs::LAUNCH_DIR`]; invoked under it, it takes the
/// subcommands `install` and `save`.
pub const LAUNCHER: &str = "kafka-expose-launch";
/// The image's own start script, as the `save` step copied it.
pub const ORIGINAL: &str = "kafka-server-start.original";
/// The edited configuration the image's script is given.
pub const EDITED: &str = "server.properties";

/// What the step needs from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub request: Request,
    /// [`envs::LAUNCH_DIR`].
    pub dir: PathBuf,
    /// [`envs::LAUNCH_SCRIPT`]: the path of the script this step stands in for, `$0` of the
    /// image's own script when it runs.
    pub script: PathBuf,
}

impl Settings {
    /// Reads the settings through `var` (the process environment in the binary).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let need = |name: &str| var(name).ok_or_else(|| format!("{name} is not set"));
        let port = |name: &str| -> Result<u16, String> {
            let v = need(name)?;
            v.parse()
                .map_err(|_| format!("{name}={v:?} is not a port number"))
        };
        let security_protocol = match var(envs::SECURITY_PROTOCOL).filter(|v| !v.is_empty()) {
            Some(v) => Some(SecurityProtocol::parse(&v).ok_or_else(|| {
                format!(
                    "{}={v:?}: allowed: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
                    envs::SECURITY_PROTOCOL
                )
            })?),
            None => None,
        };
        Ok(Self {
            request: Request {
                listener_name: need(envs::LISTENER_NAME)?,
                container_port: port(envs::CONTAINER_PORT)?,
                advertised_host: need(envs::EXTERNAL_HOST)?,
                advertised_port: port(envs::EXTERNAL_PORT)?,
                security_protocol,
                tls: crate::tls::from_vars(&var)?,
            },
            dir: PathBuf::from(need(envs::LAUNCH_DIR)?),
            script: PathBuf::from(need(envs::LAUNCH_SCRIPT)?),
        })
    }
}

/// `kafka-server-start.sh`'s arguments: `[-daemon] <file> [--override k=v | --override=k=v …]`,
/// and anything else it passes through untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartArgs {
    /// Where the file argument is.
    pub file_at: usize,
    /// The `--override` settings, in order, with the positions of the arguments that carry them.
    pub overrides: Vec<(String, String)>,
    override_at: Vec<usize>,
}

/// Reads the arguments the way `kafka-server-start.sh` and `kafka.Kafka` do: `-daemon` first is
/// the script's own; the next argument is the file. `None` when there is no file (the script
/// prints its usage then).
pub fn parse_start_args(args: &[OsString]) -> Option<StartArgs> {
    let mut i = 0;
    if args.first().is_some_and(|a| a == "-daemon") {
        i = 1;
    }
    let file_at = i;
    let file = args.get(file_at)?.to_str()?;
    if file.is_empty() || file.starts_with('-') {
        return None;
    }
    let mut overrides = Vec::new();
    let mut override_at = Vec::new();
    let mut j = file_at + 1;
    while j < args.len() {
        // `--override` takes the next argument whatever it is, as Kafka's option parser does; a
        // value that is not `key=value` is left where it is, for Kafka to refuse.
        let a = args[j].to_str();
        let (value, at) = match a {
            Some("--override") => (args.get(j + 1).and_then(|v| v.to_str()), vec![j, j + 1]),
            Some(a) if a.starts_with("--override=") => (Some(&a["--override=".len()..]), vec![j]),
            _ => (None, vec![j]),
        };
        let taken = at.len().min(args.len() - j);
        match value.and_then(|v| v.split_once('=')) {
            Some((k, v)) if !k.trim().is_empty() => {
                overrides.push((k.trim().to_string(), v.to_string()));
                override_at.extend(at);
            }
            _ => {}
        }
        j += taken;
    }
    Some(StartArgs {
        file_at,
        overrides,
        override_at,
    })
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The edited configuration to write to [`Settings::dir`]/[`EDITED`] before the start, if any.
    pub write: Option<(PathBuf, String)>,
    /// The arguments the image's script gets.
    pub args: Vec<OsString>,
    /// For the log.
    pub notes: Vec<String>,
    /// Set when the chart's configuration is kept as it is, with why (starts with
    /// [`KEPT_MARK`]): for the termination message.
    pub kept: Option<String>,
}

/// Decides the start: the edited file and the arguments, or the chart's own, with why. `read`
/// reads the chart's file. Never fails: every way out keeps the chart's start.
pub fn plan(
    args: &[OsString],
    settings: &Result<Settings, String>,
    read: impl Fn(&Path) -> std::io::Result<String>,
) -> Plan {
    let keep = |message: String| Plan {
        write: None,
        args: args.to_vec(),
        notes: vec![message.clone()],
        kept: Some(message),
    };
    let settings = match settings {
        Ok(s) => s,
        Err(why) => return keep(format!("{KEPT_MARK}the launch step's settings: {why}")),
    };
    let Some(start) = parse_start_args(args) else {
        return keep(format!(
            "{KEPT_MARK}kafka-server-start.sh was given no properties file, so there was nothing to add the listener to"
        ));
    };
    let file = PathBuf::from(&args[start.file_at]);
    let text = match read(&file) {
        Ok(t) => t,
        Err(e) => return keep(format!("{KEPT_MARK}reading {}: {e}", file.display())),
    };
    let effective = properties::with_settings(&text, &start.overrides);
    let edit = properties::patch_or_keep(&effective, &settings.request);
    if let Some(why) = &edit.kept {
        return keep(why.kept_message());
    }
    let edited = settings.dir.join(EDITED);
    let mut out: Vec<OsString> = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        if i == start.file_at {
            out.push(edited.clone().into_os_string());
        } else if !start.override_at.contains(&i) {
            out.push(a.clone());
        }
    }
    let mut notes = edit.notes;
    notes.insert(
        0,
        format!(
            "{} with its {} --override setting(s), edited into {}",
            file.display(),
            start.overrides.len(),
            edited.display()
        ),
    );
    Plan {
        write: Some((edited, edit.text)),
        args: out,
        notes,
        kept: None,
    }
}

/// How to run the image's own start script, saved as `original`, so that it behaves as if run
/// from `path`: a script is sourced by the interpreter its `#!` line names (else `/bin/sh`) with
/// `$0` set to `path`; a binary is run directly with `argv[0]` set to `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub program: PathBuf,
    /// `argv[0]`.
    pub arg0: OsString,
    pub args: Vec<OsString>,
}

pub fn exec_of(original: &Path, head: &[u8], path: &OsString, args: &[OsString]) -> Exec {
    if !head.starts_with(b"#!") {
        if head.starts_with(b"\x7fELF") {
            return Exec {
                program: original.to_path_buf(),
                arg0: path.clone(),
                args: args.to_vec(),
            };
        }
        return sourced(vec!["/bin/sh".into()], original, path, args);
    }
    let line = head[2..].split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace().map(OsString::from);
    let interp: Vec<OsString> = match (words.next(), words.next()) {
        (Some(p), Some(arg)) => vec![p, arg],
        (Some(p), None) => vec![p],
        _ => vec!["/bin/sh".into()],
    };
    sourced(interp, original, path, args)
}

fn sourced(interp: Vec<OsString>, original: &Path, path: &OsString, args: &[OsString]) -> Exec {
    let mut it = interp.into_iter();
    let program = PathBuf::from(it.next().unwrap_or_else(|| "/bin/sh".into()));
    let mut out: Vec<OsString> = it.collect();
    out.push("-c".into());
    out.push(format!(". {}", shell_quote(&original.to_string_lossy())).into());
    out.push(path.clone());
    out.extend(args.iter().cloned());
    Exec {
        arg0: program.clone().into_os_string(),
        program,
        args: out,
    }
}

/// `s` in single quotes, as a POSIX shell reads it back.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn settings() -> Result<Settings, String> {
        Ok(Settings {
            request: Request {
                listener_name: "EXTERNAL".into(),
                container_port: 9095,
                advertised_host: "203.0.113.7".into(),
                advertised_port: 31092,
                security_protocol: None,
                tls: None,
            },
            dir: "/kx".into(),
            script: "/opt/kafka/bin/kafka-server-start.sh".into(),
        })
    }

    const FILE: &str = "process.roles=broker,controller\nlisteners=CLIENT://:9092,CONTROLLER://:9093\nadvertised.listeners=CLIENT://b-0:9092\nlistener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT\ncontroller.listener.names=CONTROLLER\n";

    #[test]
    fn the_file_is_edited_into_a_copy_and_the_script_gets_the_copy() {
        let p = plan(&os(&["/cfg/server.properties"]), &settings(), |_| {
            Ok(FILE.into())
        });
        assert_eq!(p.kept, None);
        assert_eq!(p.args, os(&["/kx/server.properties"]));
        let (path, text) = p.write.unwrap();
        assert_eq!(path, PathBuf::from("/kx/server.properties"));
        assert!(text.contains("EXTERNAL://203.0.113.7:31092"), "{text}");
        assert!(text.contains("EXTERNAL:SASL_PLAINTEXT"), "{text}");
    }

    #[test]
    fn overrides_are_folded_into_the_file_as_kafka_applies_them() {
        let args = os(&[
            "-daemon",
            "/cfg/server.properties",
            "--override",
            "listeners=CLIENT://:9092,CONTROLLER://:9093,REPL://:9094",
            "--override=broker.id=3",
            "--other",
        ]);
        let p = plan(&args, &settings(), |_| Ok(FILE.into()));
        assert_eq!(p.args, os(&["-daemon", "/kx/server.properties", "--other"]));
        let text = p.write.unwrap().1;
        assert!(text.contains("REPL://:9094"), "{text}");
        assert!(text.contains("broker.id=3"), "{text}");
        assert!(text.contains("EXTERNAL://:9095"), "{text}");
    }

    #[test]
    fn a_chart_listener_already_there_is_kept_and_the_start_is_the_charts() {
        let text = format!("{FILE}listeners=CLIENT://:9092,EXTERNAL://:9999\n");
        let args = os(&["/cfg/server.properties"]);
        let p = plan(&args, &settings(), |_| Ok(text.clone()));
        assert_eq!(p.write, None);
        assert_eq!(p.args, args);
        assert!(p.kept.unwrap().starts_with(KEPT_MARK));
    }

    #[test]
    fn no_file_no_settings_or_an_unreadable_file_keep_the_charts_start() {
        let args = os(&["/cfg/server.properties"]);
        let unreadable = plan(&args, &settings(), |_| Err(std::io::Error::other("denied")));
        assert_eq!(unreadable.args, args);
        assert!(unreadable.kept.unwrap().contains("denied"));
        let unset = plan(&args, &Err("X is not set".into()), |_| Ok(FILE.into()));
        assert_eq!(unset.args, args);
        for none in [os(&[]), os(&["-daemon"]), os(&["--version"])] {
            let p = plan(&none, &settings(), |_| Ok(FILE.into()));
            assert_eq!(p.args, none);
            assert!(p.kept.is_some());
        }
    }

    #[test]
    fn the_settings_come_from_the_environment_with_clear_errors() {
        let vars = |missing: &str, bad_port: bool| {
            let missing = missing.to_string();
            move |k: &str| -> Option<String> {
                if k == missing {
                    return None;
                }
                Some(match k {
                    envs::CONTAINER_PORT if bad_port => "x".into(),
                    envs::CONTAINER_PORT | envs::EXTERNAL_PORT => "9095".into(),
                    envs::SECURITY_PROTOCOL => String::new(),
                    envs::TLS_CLIENT_AUTH => "required".into(),
                    _ => "v".into(),
                })
            }
        };
        let tls = Settings::from_vars(vars("", false)).unwrap().request.tls;
        assert_eq!(
            tls.map(|t| t.client_auth),
            Some(crate::tls::ClientAuth::Required)
        );
        let plain = Settings::from_vars(vars(envs::TLS_DIR, false)).unwrap();
        assert_eq!(plain.request.tls, None, "no directory, no TLS of its own");
        let e = crate::tls::from_vars(|k| {
            Some(if k == envs::TLS_CLIENT_AUTH {
                "want".into()
            } else {
                "/d".into()
            })
        })
        .unwrap_err();
        assert!(e.contains("none, requested, required"), "{e}");
        let e = Settings::from_vars(vars(envs::LAUNCH_DIR, false)).unwrap_err();
        assert!(e.contains(envs::LAUNCH_DIR), "{e}");
        let e = Settings::from_vars(vars("", true)).unwrap_err();
        assert!(e.contains("not a port"), "{e}");
    }

    #[test]
    fn a_script_is_sourced_by_its_interpreter_with_dollar_zero_its_own_path() {
        let path = OsString::from("/opt/kafka/bin/kafka-server-start.sh");
        let args = os(&["/kx/server.properties"]);
        let e = exec_of(
            Path::new("/kx/orig"),
            b"#!/bin/bash\nexec x\n",
            &path,
            &args,
        );
        assert_eq!(e.program, PathBuf::from("/bin/bash"));
        assert_eq!(
            e.args,
            os(&[
                "-c",
                ". '/kx/orig'",
                "/opt/kafka/bin/kafka-server-start.sh",
                "/kx/server.properties"
            ])
        );
        let e = exec_of(
            Path::new("/kx/orig"),
            b"#!/usr/bin/env bash\n",
            &path,
            &args,
        );
        assert_eq!(e.program, PathBuf::from("/usr/bin/env"));
        assert_eq!(e.args[0], "bash");
        let e = exec_of(Path::new("/kx/orig"), b"exec x\n", &path, &args);
        assert_eq!(e.program, PathBuf::from("/bin/sh"));
        let e = exec_of(Path::new("/kx/orig"), b"\x7fELF....", &path, &args);
        assert_eq!((e.program, e.arg0), (PathBuf::from("/kx/orig"), path));
    }
}
