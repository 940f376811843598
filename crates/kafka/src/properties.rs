//! The `server.properties` editor behind `kafka-expose patch-properties`, the properties
//! adapter's init container.
//!
//! It reads the broker's listener settings from the file, makes the edit of
//! [`super::external`] (the same one the env adapter makes on variables), and writes the result
//! back. Everything else is kept as it was: comments, blank lines, order, unrelated keys and line endings. Edited keys keep their
//! place; new keys go at the end. Running it twice gives the same file.
//!
//! The format is Java's `Properties` text format
//! (<https://docs.oracle.com/javase/8/docs/api/java/util/Properties.html#load-java.io.Reader->):
//! a key ends at the first unescaped `=`, `:` or blank; a line ending in an odd number of
//! backslashes continues on the next one; `#` and `!` start comments; the last entry of a key
//! wins.

use super::external::{
    External, ProtocolSource, ScopedKeys, add_external, choose_protocol, copy_scoped, tls_warning,
};
use super::listeners::{ListenerSet, SecurityProtocol, parse_listeners};
use super::tls::{self, ListenerTls};

/// What to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub listener_name: String,
    /// The port the broker binds for the listener.
    pub container_port: u16,
    /// The host the broker advertises on it.
    pub advertised_host: String,
    /// The port the broker advertises on it.
    pub advertised_port: u16,
    /// The listener's protocol; `None` takes the client listener's.
    pub security_protocol: Option<SecurityProtocol>,
    /// The listener's own TLS identity (`external-tls`); `None` leaves its TLS, if any, to the
    /// broker-wide settings.
    pub tls: Option<ListenerTls>,
}

/// The outcome of an edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The new text; equal to the input when nothing changed.
    pub text: String,
    pub changed: bool,
    /// What was done, for the init container's log.
    pub notes: Vec<String>,
    /// Set when the chart's configuration already claims the listener or its port (see
    /// [`patch_or_keep`]): the file is left exactly as the chart made it.
    pub kept: Option<PropertiesError>,
}

/// Why the external listener cannot be added as asked: the chart's own configuration already
/// holds its name or its port. A chart that adds its own external listener at start (an init
/// script, which no look at the manifest can see) produces exactly this.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PropertiesError {
    #[error(
        "port {port} is already bound by listener {listener}; set kafka-expose.io/container-port to a free port"
    )]
    PortInUse { port: u16, listener: String },
    #[error("listener {0} is already bound with another port or advertised elsewhere: {1}")]
    Conflict(String, String),
    #[error("{}", tls::conflict_message(.0.iter().map(String::as_str).collect::<Vec<_>>().as_slice()))]
    TlsBlocked(Vec<String>),
}

impl PropertiesError {
    /// What the injected step says when it keeps the chart's configuration: in its log, its
    /// termination message, and from there the workload's status and Events.
    pub fn kept_message(&self) -> String {
        let why = match self {
            Self::Conflict(name, found) => format!(
                "listener {name} is already in it ({found}), so kafka-expose added no listener and this broker is not reachable through kafka-expose's Service; to expose the chart's own listener instead, set kafka-expose.io/adapter=adopt"
            ),
            Self::PortInUse { port, listener } => format!(
                "port {port} is already bound by its listener {listener}, so kafka-expose added no listener and this broker is not reachable through kafka-expose's Service; set kafka-expose.io/container-port to a free port, or kafka-expose.io/adapter=adopt if that listener is the chart's external one"
            ),
            Self::TlsBlocked(_) => format!(
                "{self}; kafka-expose added no listener and this broker is not reachable through kafka-expose's Service; set kafka-expose.io/external-tls=off to expose it with the chart's TLS settings"
            ),
        };
        format!("{}{why}", crate::KEPT_MARK)
    }
}

/// [`patch`], for the step that runs in the broker's pod, where a refusal would stop the broker:
/// when the chart's configuration already claims the listener's name or port, the text is kept
/// as it is, with the reason in [`Edit::kept`], and nothing fails.
pub fn patch_or_keep(text: &str, req: &Request) -> Edit {
    patch(text, req).unwrap_or_else(|why| Edit {
        text: text.to_string(),
        changed: false,
        notes: vec![why.kept_message()],
        kept: Some(why),
    })
}

/// One logical entry: its physical lines (with their endings), and its key and value if it is
/// not a comment or blank.
#[derive(Debug, Clone)]
struct Entry {
    raw: String,
    key: Option<String>,
    /// The raw text from the start of the line up to the value.
    prefix: String,
    value: String,
    eol: String,
}

/// A properties document that keeps its text.
#[derive(Debug, Clone)]
struct Doc {
    entries: Vec<Entry>,
    eol: String,
    ends_with_eol: bool,
}

/// Splits text into lines and their endings. As Java's `Properties.load` reads it, a line ends
/// at `\n`, `\r\n` or a lone `\r`.
fn split_lines(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(i) => {
                let eol = if rest[i..].starts_with("\r\n") {
                    "\r\n"
                } else if rest.as_bytes()[i] == b'\r' {
                    "\r"
                } else {
                    "\n"
                };
                out.push((&rest[..i], eol));
                rest = &rest[i + eol.len()..];
            }
            None => {
                out.push((rest, ""));
                rest = "";
            }
        }
    }
    out
}

fn continues(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

impl Doc {
    fn parse(text: &str) -> Self {
        let lines = split_lines(text);
        let eol = lines
            .iter()
            .find(|(_, e)| !e.is_empty())
            .map(|(_, e)| e.to_string())
            .unwrap_or_else(|| "\n".to_string());
        let ends_with_eol = text.ends_with('\n');
        let mut entries = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let (first, first_eol) = lines[i];
            let trimmed = first.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
                entries.push(Entry {
                    raw: format!("{first}{first_eol}"),
                    key: None,
                    prefix: String::new(),
                    value: String::new(),
                    eol: first_eol.to_string(),
                });
                i += 1;
                continue;
            }
            let mut raw = format!("{first}{first_eol}");
            let mut logical = first.to_string();
            let mut last_eol = first_eol;
            while continues(&logical) && i + 1 < lines.len() {
                logical.pop();
                i += 1;
                let (next, next_eol) = lines[i];
                logical.push_str(next.trim_start());
                raw.push_str(next);
                raw.push_str(next_eol);
                last_eol = next_eol;
            }
            let (key, prefix_len) = split_key(&logical);
            entries.push(Entry {
                raw,
                prefix: logical[..prefix_len].to_string(),
                value: logical[prefix_len..].to_string(),
                key: Some(key),
                eol: last_eol.to_string(),
            });
            i += 1;
        }
        Doc {
            entries,
            eol,
            ends_with_eol,
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key.as_deref() == Some(key))
            .map(|e| e.value.as_str())
    }

    /// Every entry's key and value, in order, owned so that the document can change after.
    fn entries(&self) -> Vec<(&str, String)> {
        self.entries
            .iter()
            .filter_map(|e| Some((e.key.as_deref()?, e.value.clone())))
            .collect()
    }

    /// Sets `key`: the last entry of it is rewritten in place, or a new line is appended.
    fn set(&mut self, key: &str, value: &str) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| e.key.as_deref() == Some(key))
        {
            if e.value == value {
                return;
            }
            // A line that is only its key (`listeners`, an empty value) has no separator: one is
            // added, so that the value is not read as part of the key.
            let (read_key, at) = split_key(&format!("{}{value}", e.prefix));
            if read_key != key || at != e.prefix.len() {
                let indent = &e.prefix[..e.prefix.len() - e.prefix.trim_start().len()];
                e.prefix = format!("{indent}{}=", escape_key(key));
            }
            e.value = value.to_string();
            e.raw = format!("{}{}{}", e.prefix, value, e.eol);
            return;
        }
        if !self.ends_with_eol
            && let Some(last) = self.entries.last_mut()
        {
            last.raw.push_str(&self.eol);
            last.eol = self.eol.clone();
        }
        // A last entry ending in a dangling `\` would continue onto the new line and swallow
        // it; a blank line ends it first, as Java reads an empty continuation line.
        if let Some(last) = self.entries.last()
            && last.key.is_some()
            && continues(last.raw.trim_end_matches(['\r', '\n']))
        {
            self.entries.push(Entry {
                raw: self.eol.clone(),
                key: None,
                prefix: String::new(),
                value: String::new(),
                eol: self.eol.clone(),
            });
        }
        let written = escape_key(key);
        self.entries.push(Entry {
            raw: format!("{written}={value}{}", self.eol),
            key: Some(key.to_string()),
            prefix: format!("{written}="),
            value: value.to_string(),
            eol: self.eol.clone(),
        });
        self.ends_with_eol = true;
    }

    fn render(&self) -> String {
        self.entries.iter().map(|e| e.raw.as_str()).collect()
    }
}

/// `text` with each `key=value` set, in order, as Kafka applies `kafka-server-start.sh`'s
/// `--override key=value` arguments over the file: the last entry of each key is rewritten in
/// place, or a line appended. Values are escaped so that they read back as given.
pub fn with_settings(text: &str, settings: &[(String, String)]) -> String {
    let mut doc = Doc::parse(text);
    for (key, value) in settings {
        doc.set(key, &escape_value(value));
    }
    doc.render()
}

/// A value as the format writes it: backslashes, line breaks and leading blanks escaped.
fn escape_value(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0c' => out.push_str("\\f"),
            ' ' if i == 0 => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

/// A key as the format writes it: separators, blanks, backslashes and a leading comment mark
/// escaped, so that it reads back as itself.
fn escape_key(key: &str) -> String {
    let mut out = String::new();
    for (i, c) in key.chars().enumerate() {
        if matches!(c, '=' | ':' | ' ' | '\t' | '\x0c' | '\\') || (i == 0 && matches!(c, '#' | '!'))
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits a logical line into its key and the length of the text before the value.
fn split_key(line: &str) -> (String, usize) {
    let start = line.len() - line.trim_start().len();
    let mut key = String::new();
    let mut chars = line[start..].char_indices().map(|(j, c)| (start + j, c));
    // Where the key ends: the first unescaped separator, or the end of the line.
    let mut end = line.len();
    while let Some((j, c)) = chars.next() {
        if c == '\\' {
            // An escaped character belongs to the key, whatever it is; a lone trailing
            // backslash is dropped, as Java drops it.
            if let Some((_, escaped)) = chars.next() {
                key.push(escaped);
            }
            continue;
        }
        if matches!(c, '=' | ':' | ' ' | '\t' | '\x0c') {
            end = j;
            break;
        }
        key.push(c);
    }
    let bytes = line.as_bytes();
    let mut i = end;
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\x0c') {
        i += 1;
    }
    if i < bytes.len() && matches!(bytes[i], b'=' | b':') {
        i += 1;
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\x0c') {
            i += 1;
        }
    }
    (key, i)
}

/// Adds the external listener to a `server.properties` text.
pub fn patch(text: &str, req: &Request) -> Result<Edit, PropertiesError> {
    let mut doc = Doc::parse(text);
    let name = req.listener_name.as_str();
    let set = ListenerSet {
        listeners: doc.get("listeners"),
        advertised: doc.get("advertised.listeners"),
        protocol_map: doc.get("listener.security.protocol.map"),
        inter_broker: doc.get("inter.broker.listener.name"),
        controller_names: doc.get("controller.listener.names"),
        process_roles: doc.get("process.roles"),
    };
    if set.is_controller_only() {
        return Ok(Edit {
            text: text.to_string(),
            changed: false,
            notes: vec![
                "process.roles=controller: a controller gets no external listener; file unchanged"
                    .into(),
            ],
            kept: None,
        });
    }

    let bound = set.bound();
    if let Some(own) = bound.iter().find(|l| l.name.eq_ignore_ascii_case(name)) {
        if own.port_number() != Some(req.container_port) {
            return Err(PropertiesError::Conflict(name.to_string(), own.to_string()));
        }
    } else if let Some(other) = bound
        .iter()
        .find(|l| l.port_number() == Some(req.container_port))
    {
        return Err(PropertiesError::PortInUse {
            port: req.container_port,
            listener: other.name.clone(),
        });
    }

    if let Some(t) = &req.tls {
        let blocked = tls::conflicts(t, |k| doc.get(k).is_some_and(|v| !v.trim().is_empty()));
        if !blocked.is_empty() {
            return Err(PropertiesError::TlsBlocked(
                blocked.into_iter().map(str::to_string).collect(),
            ));
        }
    }

    let mut notes = Vec::new();
    let client = set.client_listener();
    let mut choice = choose_protocol(req.security_protocol, client.as_ref());
    if let ProtocolSource::Client(c) = &choice.source {
        notes.push(format!(
            "protocol {} taken from client listener {}",
            c.protocol, c.name
        ));
    }
    notes.extend(choice.warning());
    match &req.tls {
        Some(t) => {
            choice.protocol = tls::with_tls(choice.protocol);
            notes.push(format!(
                "the listener serves its own certificate ({}, from {}) over {}",
                tls::KEYSTORE_FILE,
                t.dir,
                choice.protocol
            ));
        }
        None if choice.protocol.is_tls() => {
            notes.push(tls_warning(Some(choice.protocol), &req.advertised_host));
        }
        None => {}
    }
    let advertised_port = req.advertised_port.to_string();
    let ext = External {
        name,
        bind_port: req.container_port,
        advertised_host: &req.advertised_host,
        advertised_port: &advertised_port,
        protocol: choice.protocol,
    };
    if let Some(present) = set
        .advertised
        .map(parse_listeners)
        .unwrap_or_default()
        .into_iter()
        .find(|l| l.name.eq_ignore_ascii_case(name))
        && present != ext.advertised_entry()
    {
        notes.push(format!(
            "advertised.listeners already has {present}; kept as the chart set it"
        ));
    }
    let edit = add_external(&set, &ext);
    let own_prefix = ScopedKeys::Properties.prefix(name);
    let mut copies = match &client {
        Some(c) => copy_scoped(&doc.entries(), ScopedKeys::Properties, &c.name, name),
        None => Vec::new(),
    };
    if req.tls.is_some() {
        copies.retain(|(k, _)| tls::copies_to_tls_listener(&k[own_prefix.len()..]));
    }
    doc.set("listeners", &edit.listeners);
    doc.set("advertised.listeners", &edit.advertised);
    doc.set("listener.security.protocol.map", &edit.protocol_map);
    if let (Some(c), false) = (&client, copies.is_empty()) {
        for (k, v) in &copies {
            doc.set(k, v);
        }
        notes.push(format!(
            "copied {} settings of listener {}",
            copies.len(),
            c.name
        ));
    }
    if let Some(t) = &req.tls {
        for (setting, value) in t.settings() {
            doc.set(&format!("{own_prefix}{setting}"), &value);
        }
    }

    let out = doc.render();
    let changed = out != text;
    if changed {
        notes.insert(
            0,
            format!(
                "added listener {name}: binds :{}, advertises {}:{}",
                req.container_port, req.advertised_host, req.advertised_port
            ),
        );
    } else {
        notes.insert(
            0,
            format!("listener {name} already present; file unchanged"),
        );
    }
    Ok(Edit {
        text: out,
        changed,
        notes,
        kept: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request {
            listener_name: "EXTERNAL".into(),
            container_port: 9095,
            advertised_host: "10.0.0.5".into(),
            advertised_port: 32401,
            security_protocol: None,
            tls: None,
        }
    }

    const SASL: &str = "# Listeners\nlisteners=CLIENT://:9092,INTERNAL://:9094,CONTROLLER://:9093\nadvertised.listeners=CLIENT://k-1.h:9092,INTERNAL://k-1.h:9094\nlistener.security.protocol.map=CLIENT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT\ncontroller.listener.names=CONTROLLER\ninter.broker.listener.name=INTERNAL\nlistener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_user1=\"p\";\nlog.dir=/bitnami/kafka/data\n";

    #[test]
    fn a_sasl_broker_gets_the_listener_with_the_client_protocol_and_jaas() {
        let e = patch(SASL, &req()).unwrap();
        assert!(e.changed);
        assert!(e.text.contains(
            "listeners=CLIENT://:9092,INTERNAL://:9094,CONTROLLER://:9093,EXTERNAL://:9095\n"
        ));
        assert!(e.text.contains("advertised.listeners=CLIENT://k-1.h:9092,INTERNAL://k-1.h:9094,EXTERNAL://10.0.0.5:32401\n"));
        assert!(e.text.contains(",EXTERNAL:SASL_PLAINTEXT\n"));
        assert!(e.text.ends_with(
            "log.dir=/bitnami/kafka/data\nlistener.name.external.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_user1=\"p\";\n"
        ));
        assert!(e.text.starts_with("# Listeners\n"));
    }

    fn tls_req(client_auth: crate::tls::ClientAuth) -> Request {
        Request {
            tls: Some(ListenerTls {
                dir: "/kafka-expose-tls".into(),
                client_auth,
            }),
            ..req()
        }
    }

    #[test]
    fn with_its_own_tls_the_listener_is_sasl_ssl_with_pem_files_and_nothing_else_changes() {
        let chart = format!(
            "{SASL}listener.name.client.ssl.keystore.location=/certs/client.jks\nssl.truststore.location=/certs/t.jks\n"
        );
        let e = patch(&chart, &tls_req(crate::tls::ClientAuth::None)).unwrap();
        assert!(e.text.contains(",EXTERNAL:SASL_SSL\n"), "{}", e.text);
        for line in [
            "listener.name.external.plain.sasl.jaas.config=",
            "listener.name.external.ssl.keystore.type=PEM\n",
            "listener.name.external.ssl.keystore.location=/kafka-expose-tls/keystore.pem\n",
            "listener.name.external.ssl.client.auth=none\n",
        ] {
            assert!(e.text.contains(line), "{line} in {}", e.text);
        }
        assert!(
            !e.text.contains("listener.name.external.ssl.truststore"),
            "no truststore without client certificates"
        );
        assert!(
            !e.text
                .contains("listener.name.external.ssl.keystore.location=/certs"),
            "the client listener's own keystore is not copied"
        );
        let others: Vec<&str> = chart.lines().collect();
        for line in &others {
            if !line.starts_with("listeners=")
                && !line.starts_with("advertised.listeners=")
                && !line.starts_with("listener.security.protocol.map=")
            {
                assert!(e.text.lines().any(|l| l == *line), "{line} kept");
            }
        }
        let twice = patch(&e.text, &tls_req(crate::tls::ClientAuth::None)).unwrap();
        assert!(!twice.changed, "idempotent");

        let req = tls_req(crate::tls::ClientAuth::Required);
        let e = patch(SASL, &req).unwrap();
        assert!(e.text.contains(
            "listener.name.external.ssl.truststore.location=/kafka-expose-tls/truststore.pem\n"
        ));
        assert!(
            e.text
                .contains("listener.name.external.ssl.client.auth=required\n")
        );
    }

    #[test]
    fn a_broker_wide_keystore_password_keeps_the_charts_file_and_says_why() {
        let chart = format!("{SASL}ssl.keystore.password=changeit\nssl.key.password=changeit\n");
        let e = patch_or_keep(&chart, &tls_req(crate::tls::ClientAuth::None));
        assert_eq!(e.text, chart);
        let why = e.kept.unwrap().kept_message();
        assert!(
            why.contains("ssl.keystore.password, ssl.key.password"),
            "{why}"
        );
        assert!(why.contains("external-tls=off"), "{why}");
        // Scoped to the chart's own listener, it is no obstacle.
        let scoped = format!("{SASL}listener.name.client.ssl.keystore.password=changeit\n");
        let e = patch_or_keep(&scoped, &tls_req(crate::tls::ClientAuth::None));
        assert!(e.kept.is_none() && e.changed);
        assert!(
            !e.text
                .contains("listener.name.external.ssl.keystore.password")
        );
    }

    #[test]
    fn patching_twice_gives_the_same_file() {
        let once = patch(SASL, &req()).unwrap();
        let twice = patch(&once.text, &req()).unwrap();
        assert!(!twice.changed);
        assert_eq!(twice.text, once.text);
    }

    #[test]
    fn crlf_endings_comments_and_a_missing_final_newline_survive() {
        let text = "! comment\r\nlisteners = PLAINTEXT://:9092\r\nfoo.bar: baz\r\nlast=1";
        let e = patch(text, &req()).unwrap();
        assert!(e.text.starts_with("! comment\r\nlisteners = PLAINTEXT://:9092,EXTERNAL://:9095\r\nfoo.bar: baz\r\nlast=1\r\n"));
        assert!(
            e.text
                .contains("advertised.listeners=PLAINTEXT://:9092,EXTERNAL://10.0.0.5:32401\r\n")
        );
        assert!(e.text.contains(
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,EXTERNAL:PLAINTEXT\r\n"
        ));
        assert!(!e.text.contains("\n\n"));
    }

    #[test]
    fn continuation_lines_are_read_as_one_value() {
        let text = "listeners=PLAINTEXT://:9092,\\\n    SSL://:9093\nother=x\n";
        let e = patch(text, &req()).unwrap();
        assert!(
            e.text
                .contains("listeners=PLAINTEXT://:9092,SSL://:9093,EXTERNAL://:9095\n")
        );
        assert!(e.text.ends_with("other=x\nadvertised.listeners=PLAINTEXT://:9092,SSL://:9093,EXTERNAL://10.0.0.5:32401\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,EXTERNAL:PLAINTEXT\n"));
    }

    #[test]
    fn a_port_taken_by_another_listener_is_an_error() {
        let mut r = req();
        r.container_port = 9094;
        assert_eq!(
            patch(SASL, &r).unwrap_err(),
            PropertiesError::PortInUse {
                port: 9094,
                listener: "INTERNAL".into()
            }
        );
    }

    #[test]
    fn in_the_pod_a_listener_the_chart_already_has_is_kept_and_nothing_fails() {
        // The chart's init script added EXTERNAL on another port than the one kafka-expose chose.
        let text = format!(
            "{SASL}listeners=CLIENT://:9092,INTERNAL://:9094,CONTROLLER://:9093,EXTERNAL://:9096\n"
        );
        let e = patch_or_keep(&text, &req());
        assert!(!e.changed);
        assert_eq!(e.text, text);
        assert_eq!(
            e.kept,
            Some(PropertiesError::Conflict(
                "EXTERNAL".into(),
                "EXTERNAL://:9096".into()
            ))
        );
        assert!(
            e.notes[0].contains("kafka-expose.io/adapter=adopt"),
            "{:?}",
            e.notes
        );
        // Its port taken by a listener of another name.
        let mut r = req();
        r.container_port = 9094;
        let e = patch_or_keep(SASL, &r);
        assert_eq!(e.text, SASL);
        assert!(e.notes[0].contains("port 9094 is already bound by its listener INTERNAL"));
        // And where nothing is in the way, the same edit as `patch`.
        assert_eq!(patch_or_keep(SASL, &req()), patch(SASL, &req()).unwrap());
    }

    #[test]
    fn a_controller_only_file_is_left_alone() {
        let text = "process.roles=controller\nlisteners=CONTROLLER://:9093\n";
        let e = patch(text, &req()).unwrap();
        assert!(!e.changed);
        assert_eq!(e.text, text);
    }

    #[test]
    fn an_escaped_multibyte_character_in_a_key_is_read_not_a_panic() {
        assert_eq!(split_key("a\\é=1"), ("aé".to_string(), 5));
        assert_eq!(split_key("k\\"), ("k".to_string(), 2));
        let e = patch("a\\é=1\nlisteners=PLAINTEXT://:9092\n", &req()).unwrap();
        assert!(e.text.starts_with("a\\é=1\n"), "{}", e.text);
    }

    #[test]
    fn a_new_key_after_a_dangling_continuation_is_not_swallowed() {
        // Found by the property test: `listeners\=\` at the end of the file used to swallow
        // the appended `listeners=` line on the next read, so a second edit conflicted.
        for text in ["listeners\\=\\", "a=b\\\n"] {
            let once = patch(text, &req()).unwrap();
            let twice = patch(&once.text, &req()).unwrap();
            assert!(!twice.changed, "{:?} -> {:?}", text, once.text);
            assert!(
                once.text
                    .contains("\nlisteners=PLAINTEXT://:9092,EXTERNAL://:9095\n")
            );
        }
    }

    #[test]
    fn a_key_alone_on_its_line_gets_a_separator_when_its_value_is_set() {
        // Found by the properties fuzz target: `listeners` with no `=` used to become
        // `listenersEXTERNAL://:9095`, read back as another key, so a second edit conflicted.
        let text = "liso0ctrp\nlisteners\nlistene=Cistener.secs=c\u{fffd}\u{fffd}";
        let once = patch(text, &req()).unwrap();
        assert!(
            once.text.contains("\nlisteners=EXTERNAL://:9095\n"),
            "{}",
            once.text
        );
        let twice = patch(&once.text, &req()).unwrap();
        assert!(!twice.changed, "{}", twice.text);
    }

    #[test]
    fn a_key_alone_with_a_dangling_backslash_gets_a_clean_separator() {
        // Found by the property test: `listeners\` became `listeners\=…`, an escaped `=`.
        let once = patch("listeners\\", &req()).unwrap();
        assert!(
            once.text
                .starts_with("listeners=PLAINTEXT://:9092,EXTERNAL://:9095\n")
                || once.text.starts_with("listeners=EXTERNAL://:9095\n"),
            "{}",
            once.text
        );
        assert!(!patch(&once.text, &req()).unwrap().changed);
    }

    #[test]
    fn with_no_listeners_set_the_default_plaintext_listener_is_the_client() {
        // Found by the properties fuzz target: with neither listeners nor advertised listeners,
        // the first edit saw no client listener and the second saw PLAINTEXT, copying its
        // settings only then.
        let text = "listener.name.plaintext.\0\0\0\u{e} :\u{1} ast=1";
        let once = patch(text, &req()).unwrap();
        assert!(
            once.text.contains("\nlistener.name.external."),
            "{}",
            once.text
        );
        assert!(!patch(&once.text, &req()).unwrap().changed);
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line_as_java_reads_it() {
        // Found by the properties fuzz target: a last line ending in a lone `\r` became `\r\n`
        // once a line was appended, so its key lost the `\r` on the next read and its settings
        // were copied a second time.
        let text =
            "liNNAL\u{fffd} )\n\u{fffd}\nlistener.name.plaintext.\u{fffd}li\\=br.name.er.nca\r";
        let once = patch(text, &req()).unwrap();
        assert!(
            !patch(&once.text, &req()).unwrap().changed,
            "{:?}",
            once.text
        );
        let old_mac = "listeners=PLAINTEXT://:9092\rlog.dir=/d\r";
        let e = patch(old_mac, &req()).unwrap();
        assert!(
            e.text
                .starts_with("listeners=PLAINTEXT://:9092,EXTERNAL://:9095\rlog.dir=/d\r"),
            "{:?}",
            e.text
        );
    }

    #[test]
    fn keys_written_anew_are_escaped_so_they_read_back_as_themselves() {
        let text = "listeners=CLIENT://:9092\nlistener.security.protocol.map=CLIENT:SASL_SSL\nlistener.name.client.a\\=b=1\n";
        let once = patch(text, &req()).unwrap();
        assert!(
            once.text.contains("\nlistener.name.external.a\\=b=1\n"),
            "{}",
            once.text
        );
        let twice = patch(&once.text, &req()).unwrap();
        assert!(!twice.changed, "{}", twice.text);
        assert_eq!(escape_key("#a b"), "\\#a\\ b");
    }

    #[test]
    fn keys_with_escapes_and_colon_separators_are_read() {
        assert_eq!(split_key("a\\=b = c"), ("a=b".to_string(), 7));
        assert_eq!(split_key("  k:v"), ("k".to_string(), 4));
        assert_eq!(split_key("k v"), ("k".to_string(), 2));
    }
}
