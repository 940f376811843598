//! `kafka-expose mutate`: reads manifests, runs [`crate::offline`] on them, prints the result.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{MutateArgs, OutputFormat};
use crate::offline;

pub fn run(args: MutateArgs) -> Result<ExitCode> {
    let MutateArgs {
        file,
        set,
        output,
        explain,
        namespace,
        engine,
    } = args;
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        s
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
    };
    let docs = offline::read_documents(&text)?;
    let opts = offline::Options {
        set,
        namespace,
        settings: engine.settings(),
    };
    let out = offline::run(docs, &opts)?;
    let rendered = if explain {
        offline::explain(&out)
    } else {
        match output {
            OutputFormat::Yaml => offline::to_yaml(&out.objects).map_err(anyhow::Error::msg)?,
            OutputFormat::Json => offline::to_json(&out.objects) + "\n",
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(rendered.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
