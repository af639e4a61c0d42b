//! `mfctl`: check the mesh filters' configurations, apply ECDS files, print the JSON Schemas.

use clap::{Parser, Subcommand, ValueEnum};
use mesh_cli::{apply, check, find, rollout, schema};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "mfctl",
    version,
    about = "Mesh filters: check configurations, apply ECDS files, roll out canaries, print JSON Schemas"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate every mesh filter configuration in the files (plugin configs in JSON or YAML,
    /// Envoy bootstraps and ECDS files, Istio WasmPlugin / TrafficExtension, Envoy Gateway
    /// EnvoyExtensionPolicy, Consul service-defaults). Exit code 0 valid, 1 invalid, 2
    /// unusable input.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Read plain plugin configurations as this filter's (canary, ratelimit,
        /// intentions, telemetry, suite) instead of telling from their content.
        #[arg(long = "as", value_name = "FILTER")]
        capability: Option<String>,
        /// Skip files with no mesh filter configuration instead of failing on them.
        #[arg(long)]
        skip_unrecognized: bool,
    },
    /// Validate a new configuration and replace the ECDS file atomically (temporary file in
    /// the same folder, fsync, rename), as Envoy's watched_directory expects. CONFIG is a
    /// plugin configuration for the mesh filter in ECDS_FILE (JSON or YAML, `-` for stdin)
    /// or a whole ECDS document.
    Apply {
        ecds_file: PathBuf,
        config: PathBuf,
        /// The resource to update when the ECDS file holds several mesh filters.
        #[arg(long)]
        resource: Option<String>,
        /// Print the new ECDS file instead of writing it.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Step a canary subset's weight up (5,10,25,50,100 %) while its error rate and p99
    /// latency, read from Prometheus or Envoy's admin endpoint, stay within the thresholds;
    /// promote it at the end (canary 100 %) or roll it back (canary 0 %) when they do not,
    /// when its in-proxy guard trips, or when there are no figures for too long. Each weight is
    /// written to the ECDS file (validated, atomic rename) or printed as a resource. A line per
    /// decision with the figures it used. Exit code 0 promoted, 1 rolled back, 2 unusable
    /// input or a weight that could not be written.
    Rollout(Box<rollout::Args>),
    /// Print a filter's JSON Schema, or write / check them all in a folder.
    Schema {
        /// canary, ratelimit, intentions, telemetry or suite.
        name: Option<String>,
        /// Write every schema into this folder.
        #[arg(long, conflicts_with_all = ["name", "check"])]
        write: Option<PathBuf>,
        /// Exit 1 when a schema in this folder differs from the generated one.
        #[arg(long, conflicts_with = "name")]
        check: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check {
            files,
            format,
            capability,
            skip_unrecognized,
        } => {
            let capability = match capability.as_deref().map(known) {
                Some(Ok(c)) => Some(c),
                Some(Err(e)) => {
                    eprintln!("mfctl: {e}");
                    return ExitCode::from(2);
                }
                None => None,
            };
            let opts = check::Options {
                capability,
                skip_unrecognized,
            };
            let report = check::check_files(&files, opts);
            print_report(&report, format);
            report.exit_code()
        }
        Command::Apply {
            ecds_file,
            config,
            resource,
            dry_run,
            format,
        } => match apply::apply(&ecds_file, &config, resource.as_deref(), dry_run) {
            Ok(done) => {
                if dry_run {
                    print!("{}", done.text);
                } else if format == Format::Json {
                    print_report(&done.report, format);
                } else {
                    println!(
                        "{}: written ({} configuration(s) valid)",
                        ecds_file.display(),
                        done.report.checked.len()
                    );
                }
                0
            }
            Err(apply::ApplyError::Invalid(_, report)) => {
                print_report(&report, format);
                eprintln!("mfctl: {} left unchanged", ecds_file.display());
                1
            }
            Err(e @ apply::ApplyError::Unusable(_)) => {
                eprintln!("mfctl: {e}");
                2
            }
        },
        Command::Rollout(args) => {
            let code = rollout::run(&args, &mut std::io::stdout(), &mut std::io::stderr());
            return ExitCode::from(code);
        }
        Command::Schema { name, write, check } => schema_cmd(name, write, check),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}

fn known(name: &str) -> Result<&'static str, String> {
    find::names().find(|n| *n == name).ok_or_else(|| {
        format!(
            "unknown filter {name:?}; one of: {}",
            find::names().collect::<Vec<_>>().join(", ")
        )
    })
}

fn print_report(report: &check::Report, format: Format) {
    match format {
        Format::Text => print!("{}", report.text()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
    }
}

fn schema_cmd(name: Option<String>, write: Option<PathBuf>, check: Option<PathBuf>) -> i32 {
    let all = schema::all();
    if let Some(dir) = write {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("mfctl: {}: {e}", dir.display());
            return 2;
        }
        for (n, s) in &all {
            let p = dir.join(schema::file_name(n));
            if let Err(e) = std::fs::write(&p, schema::render(s)) {
                eprintln!("mfctl: {}: {e}", p.display());
                return 2;
            }
            println!("wrote {}", p.display());
        }
        return 0;
    }
    if let Some(dir) = check {
        let mut stale = 0;
        for (n, s) in &all {
            let p = dir.join(schema::file_name(n));
            if std::fs::read_to_string(&p).ok().as_deref() != Some(schema::render(s).as_str()) {
                println!(
                    "{}: stale or missing (run `cargo xtask schemas`)",
                    p.display()
                );
                stale += 1;
            }
        }
        return i32::from(stale > 0);
    }
    let name = name.unwrap_or_else(|| "suite".into());
    match all.iter().find(|(n, _)| *n == name) {
        Some((_, s)) => {
            print!("{}", schema::render(s));
            0
        }
        None => {
            eprintln!("mfctl: {}", known(&name).err().unwrap_or_default());
            2
        }
    }
}
