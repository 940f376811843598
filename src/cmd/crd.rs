//! `kafka-expose crd`: the KafkaExposePolicy CRD as `deploy/manifests/crd.yaml` ships it, or, with
//! `--chart`, as the chart's `templates/crd.yaml`. Tests hold both files equal to this output.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::api;
use crate::cli::CrdArgs;

pub fn run(args: CrdArgs) -> Result<ExitCode> {
    let text = if args.chart {
        api::crd_chart_template()
    } else {
        api::crd_yaml()
    }
    .context("could not write the CRD as YAML")?;
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("could not write to standard output")?;
    Ok(ExitCode::SUCCESS)
}
