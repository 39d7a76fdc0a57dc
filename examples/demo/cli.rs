//! Command-line options of `examples/batch.rs`.

use super::job::Mode;

pub const USAGE: &str = "\
usage: cargo run --release --example batch -- [--items N] [--seed S] [--only naive|limited|batch] [--outage] [--adaptive]

  --items N               customers to process, 1 to 50000 (default 3000)
  --seed S                seed for the data, latencies and failures (default 1)
  --only naive|limited|batch
                          run one of the three jobs only (default all three)
  --outage                instead: the limited job while the address service is down
                          for 2 s, without and with a circuit breaker
  --adaptive              instead: fetch 2000 addresses without knowing the service's
                          capacity, while it is scaled up: fixed rate, fixed limit, adaptive
  -h, --help              print this help";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub items: usize,
    pub seed: u64,
    /// `None`: every run.
    pub only: Option<Mode>,
    /// Run the outage comparison instead.
    pub outage: bool,
    /// Run the adaptive-limit comparison instead.
    pub adaptive: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            items: 3000,
            seed: 1,
            only: None,
            outage: false,
            adaptive: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
}

/// Parses the arguments after the program name. `--name value` and
/// `--name=value` are both accepted. The error says what was wrong.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--outage" => options.outage = true,
            "--adaptive" => options.adaptive = true,
            "--items" => {
                let v = value()?;
                options.items = match v.parse::<usize>() {
                    Ok(n @ 1..=50_000) => n,
                    _ => return Err(format!("--items takes a number from 1 to 50000, not {v:?}")),
                };
            }
            "--seed" => {
                let v = value()?;
                options.seed = v
                    .parse()
                    .map_err(|_| format!("--seed takes a non-negative integer, not {v:?}"))?;
            }
            "--only" => {
                let v = value()?;
                options.only = Some(match v.as_str() {
                    "limited" => Mode::Limited,
                    "naive" => Mode::Naive,
                    "batch" => Mode::Batch,
                    _ => {
                        return Err(format!(
                            "--only takes `naive`, `limited` or `batch`, not {v:?}"
                        ))
                    }
                });
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Command::Run(options))
}
