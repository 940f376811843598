//! The `server.properties` editor on any text: no panic, an edit applied to its own output
//! changes nothing, and the steps that run in the pod (`patch-properties`, and the launcher in
//! place of `kafka-server-start.sh`, on any arguments) either edit or keep the chart's
//! configuration as it is, never failing (the chart may already hold the listener or its port).
#![no_main]

#[path = "../../tests/support/checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    checks::properties_edit(&text);
    for port in [9092, 9095] {
        checks::properties_step_keeps_or_edits(&text, port);
    }
    // The launch step: the input's first line is the start's arguments (blank-separated, in
    // front of the file), the rest the file.
    let (first, file) = text.split_once('\n').unwrap_or((&text, ""));
    let mut args: Vec<String> = vec!["/etc/kafka/server.properties".into()];
    args.extend(first.split(' ').filter(|a| !a.is_empty()).map(str::to_string));
    checks::launch_step_keeps_or_edits(file, &args, 9095);
    checks::launch_step_keeps_or_edits(&text, &args[1..], 9095);
});
