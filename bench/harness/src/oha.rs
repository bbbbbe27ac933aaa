//! Reads the JSON report of the load tool (`oha --output-format json
//! --stats-success-breakdown`) into the few figures the suite reports.

use crate::report;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// oha's JSON report.
    file: std::path::PathBuf,
    /// Prefix of the printed keys.
    #[arg(long)]
    prefix: String,
}

/// oha's name for requests still running when `-z` ran out: not the server's fault.
const DEADLINE: &str = "aborted due to deadline";

pub fn summary(args: &Args) -> crate::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("read {}: {e}", args.file.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let p = &args.prefix;

    let total_secs = json["summary"]["total"].as_f64().unwrap_or(0.0);
    let mut ok = 0u64;
    let mut other = 0u64;
    if let Some(statuses) = json["statusCodeDistribution"].as_object() {
        for (code, n) in statuses {
            let n = n.as_u64().unwrap_or(0);
            if code.starts_with('2') {
                ok += n;
            } else {
                other += n;
                report(&format!("{p}_status_{code}"), n);
            }
        }
    }
    let mut errors = 0u64;
    if let Some(kinds) = json["errorDistribution"].as_object() {
        for (kind, n) in kinds {
            let n = n.as_u64().unwrap_or(0);
            if kind == DEADLINE {
                report(&format!("{p}_deadline_aborted"), n);
            } else {
                errors += n;
                eprintln!("  {p}: {n} x {kind}");
            }
        }
    }
    report(&format!("{p}_ok"), ok);
    report(&format!("{p}_not_2xx"), other);
    report(&format!("{p}_errors"), errors);
    if total_secs > 0.0 {
        report(
            &format!("{p}_rps"),
            format!("{:.1}", ok as f64 / total_secs),
        );
    }
    let ms = |section: &str, key: &str| json[section][key].as_f64().map(|s| s * 1000.0);
    for (section, name) in [
        ("latencyPercentiles", "all"),
        ("latencyPercentilesSuccessful", "ok"),
    ] {
        for pct in ["p50", "p99"] {
            if let Some(v) = ms(section, pct) {
                report(&format!("{p}_{name}_{pct}_ms"), format!("{v:.2}"));
            }
        }
    }
    Ok(())
}
