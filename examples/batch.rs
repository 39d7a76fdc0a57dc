//! The batch demonstration: a job that labels a few thousand customers by
//! calling two HTTP services, run the obvious way and then with `limit`.
//!
//! ```sh
//! cargo run --release --example batch
//! cargo run --release --example batch -- --items 500 --seed 7 --only limited
//! ```
//!
//! Both services run in this process, on free ports of 127.0.0.1, and
//! behave like real ones under load: past their capacity they slow down,
//! then shed load with `503` and `Retry-After`; a few requests fail at random
//! anyway. The code they run is in `examples/demo/`.

use limit_demo as demo;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use demo::cli::{self, Command, Options};
use demo::client::{ADDRESSES_MAX, USERS_MAX};
use demo::job::{self, Mode, Report, BATCH_IN_PROGRESS};
use demo::service::{ADDRESSES_CAPACITY, USERS_CAPACITY};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[tokio::main]
async fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if options.outage {
        return outage(&options).await;
    }
    if options.adaptive {
        return adaptive(&options).await;
    }
    intro(&options);
    let customers = demo::data::customers(options.items, options.seed);
    let modes = match options.only {
        Some(mode) => vec![mode],
        None => vec![Mode::Naive, Mode::Limited, Mode::Batch],
    };
    let unloaded = match job::probe_unloaded(options.seed).await {
        Ok(latencies) => latencies,
        Err(e) => {
            eprintln!("error: the services did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut reports = Vec::new();
    for mode in modes {
        let bar = progress_bar(mode, customers.len());
        let mut failed = 0;
        let outcome = job::run(mode, &customers, options.seed, |ok| {
            if !ok {
                failed += 1;
                bar.set_message(format!("{failed} failed"));
            }
            bar.inc(1);
        })
        .await;
        match outcome {
            Ok(report) => {
                bar.finish();
                reports.push(report);
            }
            Err(e) => {
                bar.abandon();
                eprintln!("error: the {mode} run failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if std::io::stdout().is_terminal() {
        println!("\n"); // end the last bar's line, then a blank one
    }
    print_table(&reports, &unloaded);
    println!();
    for report in &reports {
        explain(report, &reports);
    }
    ExitCode::SUCCESS
}

/// The limited job while the address service is down, without and with a
/// circuit breaker.
async fn outage(options: &Options) -> ExitCode {
    let customers = demo::data::customers(options.items, options.seed);
    println!(
        "{} customers (seed {}); the address service answers 503 to everything from {:.1} s to {:.1} s",
        options.items,
        options.seed,
        job::OUTAGE_AT.as_secs_f64(),
        (job::OUTAGE_AT + job::OUTAGE_FOR).as_secs_f64()
    );
    println!(
        "into the run, then recovers. The limited job runs twice: its address lookups retried"
    );
    println!("as before, then behind #[circuit_breaker] (min_calls 20, 50 %, window 500 ms, open 500 ms).");
    println!();
    let mut reports = Vec::new();
    for breaker in [false, true] {
        match job::run_outage(&customers, options.seed, breaker).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: the outage run failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("  {:<48} {:>14} {:>14}", "", "no breaker", "breaker");
    let row = |name: &str, f: &dyn Fn(&job::OutageReport) -> String| {
        println!("  {name:<48} {:>14} {:>14}", f(&reports[0]), f(&reports[1]));
    };
    row("wall time", &|r| secs(r.wall));
    row("customers labelled", &|r| {
        format!("{}/{}", r.done, r.customers)
    });
    row("failures left unrecovered", &|r| r.failed.to_string());
    row("requests to the address service, in all", &|r| {
        r.sent_to_addresses.to_string()
    });
    row("  of them while it was down", &|r| {
        r.sent_while_down.to_string()
    });
    row("lookups refused at once (no request sent)", &|r| {
        r.refused.to_string()
    });
    println!();
    if let Some(msg) = &reports[1].message {
        say(
            "breaker:",
            &format!(
                "{} requests hit the service while it was down instead of {}; the job said once: \"{msg}\", \
                 paused, and resumed when the trial calls succeeded.",
                reports[1].sent_while_down, reports[0].sent_while_down
            ),
        );
    }
    ExitCode::SUCCESS
}

/// Three ways to call a service whose capacity the client does not know,
/// while it is scaled up.
async fn adaptive(options: &Options) -> ExitCode {
    use demo::scale::{self, Strategy};
    println!(
        "{} addresses fetched from an address service that takes {} requests at once at full speed",
        scale::ITEMS,
        scale::START_CAPACITY
    );
    println!(
        "(~15 ms each, slower beyond that, 503 past twice that) and is scaled up to {} at {:.1} s.",
        scale::SCALED_CAPACITY,
        scale::SCALE_AT.as_secs_f64()
    );
    println!("The client does not know any of this. Three runs:");
    println!("  fixed rate:  #[limited(name = \"scale-rate\", rate = \"500/s\", burst = 10)], a cautious compromise");
    println!(
        "  fixed limit: #[limited(name = \"scale-fixed\", max = {})], the capacity as documented",
        scale::START_CAPACITY
    );
    println!("  adaptive:    #[limited(name = \"scale-adaptive\", adaptive, overload = ApiError::is_overload)]");
    println!();
    let mut reports = Vec::new();
    for strategy in Strategy::SCALED.into_iter().chain(Strategy::STEADY) {
        match scale::run_scale(strategy, options.seed).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: the {} run failed: {e}", strategy.label());
                return ExitCode::FAILURE;
            }
        }
    }
    scale_table(&reports[..3]);
    println!();
    let (limit, adaptive) = (&reports[1], &reports[2]);
    say(
        "adaptive:",
        &format!(
            "finished in {} against {} for the fixed limit, with {} 503s, and ended at a limit of {}              for a service that now takes {} at once: nobody chose that number.",
            secs(adaptive.wall),
            secs(limit.wall),
            adaptive.shed,
            adaptive.settled,
            scale::SCALED_CAPACITY
        ),
    );
    println!();
    println!(
        "The same job against a service that takes {} at once throughout, with the right",
        scale::SCALED_CAPACITY
    );
    println!("fixed limit known in advance, and with a fresh adaptive limit:");
    println!();
    scale_table(&reports[3..]);
    println!();
    let (known, steady) = (&reports[3], &reports[4]);
    say(
        "adaptive:",
        &format!(
            "{:.2}× the right fixed limit's throughput, without knowing it.",
            known.wall.as_secs_f64() / steady.wall.as_secs_f64()
        ),
    );
    ExitCode::SUCCESS
}

fn scale_table(reports: &[demo::scale::ScaleReport]) {
    use demo::scale;
    print!("  {:<34}", "");
    for r in reports {
        print!(" {:>15}", r.strategy.label());
    }
    println!();
    let row = |name: &str, f: &dyn Fn(&scale::ScaleReport) -> String| {
        print!("  {name:<34}");
        for r in reports {
            print!(" {:>15}", f(r));
        }
        println!();
    };
    row("wall time", &|r| secs(r.wall));
    row("addresses fetched", &|r| {
        format!("{}/{}", r.ok, scale::ITEMS)
    });
    row("503s (the service overloaded)", &|r| r.shed.to_string());
    row("other failures", &|r| r.other_errors.to_string());
    row("peak in flight, seen by the service", &|r| {
        r.peak_in_flight.to_string()
    });
    row("the limit it settled on", &|r| r.settled.clone());
}

fn intro(options: &Options) {
    println!(
        "{} customers (seed {}) labelled by a job that calls two HTTP services on 127.0.0.1:",
        options.items, options.seed
    );
    println!(
        "  users      capacity {USERS_CAPACITY:>2} requests at once   GET /users/{{id}} ~10 ms, GET /groups/{{id}} ~120 ms"
    );
    println!("  addresses  capacity {ADDRESSES_CAPACITY:>2} requests at once   GET /addresses/{{id}} ~15 ms");
    println!("Past capacity they slow down, past twice it they answer 503 with Retry-After;");
    println!("2.5 % of requests fail at random whatever the load. Every customer is a task:");
    println!("  naive    every call at once, plain functions: no limit, no retry, no sharing");
    println!(
        "  limited  the same tasks calling #[limited(max = {USERS_MAX} / {ADDRESSES_MAX})] #[retry] #[coalesce] functions"
    );
    println!(
        "  batch    the same functions through batch::job({BATCH_IN_PROGRESS}) as batch work, groups interleaved"
    );
    println!("Beside each job, an online probe looks up a user every 50 ms, as a person would.");
    println!();
}

/// A bar on stdout while it is a terminal; hidden when piped or redirected.
fn progress_bar(mode: Mode, len: usize) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stdout());
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos:>5}/{len} {elapsed:>4} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(mode.to_string());
    bar
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
}

fn print_table(reports: &[Report], unloaded: &[Duration]) {
    type Row = (String, Box<dyn Fn(&Report) -> String>);
    let rows: Vec<Row> = vec![
        ("wall time".into(), Box::new(|r| secs(r.wall))),
        (
            "customers labelled".into(),
            Box::new(|r| format!("{}/{}", r.done, r.customers)),
        ),
        (
            "failures left unrecovered".into(),
            Box::new(|r| r.failed.to_string()),
        ),
        (
            "requests sent".into(),
            Box::new(|r| r.client.requests.to_string()),
        ),
        (
            "503s seen (shed, or at random)".into(),
            Box::new(|r| r.client.seen_503.to_string()),
        ),
        (
            "other errors seen (500, no response)".into(),
            Box::new(|r| r.client.seen_other.to_string()),
        ),
        ("retries".into(), Box::new(|r| r.client.retries.to_string())),
        (
            "calls saved by coalescing".into(),
            Box::new(|r| r.client.group_shared.to_string()),
        ),
        (
            format!("in flight at once, users (capacity {USERS_CAPACITY})"),
            Box::new(|r| r.peak_to_users.to_string()),
        ),
        (
            "  as measured by the service".into(),
            Box::new(|r| r.users.peak_in_flight.to_string()),
        ),
        (
            format!("in flight at once, addresses (capacity {ADDRESSES_CAPACITY})"),
            Box::new(|r| r.peak_to_addresses.to_string()),
        ),
        (
            "  as measured by the service".into(),
            Box::new(|r| r.addresses.peak_in_flight.to_string()),
        ),
        (
            format!(
                "online probe p50 (unloaded: {})",
                ms(job::quantile(unloaded, 0.5))
            ),
            Box::new(|r| ms(job::quantile(&r.online, 0.5))),
        ),
        (
            format!(
                "online probe p99 (unloaded: {})",
                ms(job::quantile(unloaded, 0.99))
            ),
            Box::new(|r| ms(job::quantile(&r.online, 0.99))),
        ),
        (
            format!(
                "online probe worst (unloaded: {})",
                ms(unloaded.last().copied())
            ),
            Box::new(|r| ms(r.online.last().copied())),
        ),
    ];
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut header = format!("  {:width$}", "");
    for r in reports {
        header.push_str(&format!(" {:>11}", r.mode.to_string()));
    }
    println!("{header}");
    for (name, cell) in &rows {
        let mut line = format!("  {name:width$}");
        for r in reports {
            line.push_str(&format!(" {:>11}", cell(r)));
        }
        println!("{line}");
    }
}

fn explain(r: &Report, all: &[Report]) {
    match r.mode {
        Mode::Naive => {
            let mut text = format!(
                "{} and {} requests in flight at once to services that handle {} and {}: \
                 they shed {} requests with 503, and {} of {} customers got no label.",
                r.peak_to_users,
                r.peak_to_addresses,
                r.users.capacity,
                r.addresses.capacity,
                r.users.shed + r.addresses.shed,
                r.failed,
                r.customers,
            );
            if r.failed * 2 > r.customers {
                text.push_str(" The wall time is the time it took to fail.");
            } else if r.failed == 0 {
                text.push_str(" The services kept up with this few: try more --items.");
            }
            say("naive:", &text);
            if !r.failures.is_empty() {
                let kinds: Vec<String> = r
                    .failures
                    .iter()
                    .map(|(kind, n)| format!("{n} × {kind}"))
                    .collect();
                say("", &format!("Unrecovered: {}.", kinds.join(", ")));
            }
            if r.failures.contains_key("no response") {
                say(
                    "",
                    "(\"no response\": connections refused or out of file descriptors, \
                     what thousands of simultaneous connections also do in production.)",
                );
            }
        }
        Mode::Batch => {
            let limited = all
                .iter()
                .find(|o| o.mode == Mode::Limited)
                .and_then(|o| o.online.last().copied());
            // The worst probe: a probe held behind a backlog is one slow
            // sample among ~100, which p99 may not show.
            let mine = r.online.last().copied();
            let beside = match (limited, mine) {
                (Some(theirs), Some(mine)) if theirs > mine * 2 => format!(
                    " against {} beside the limited job, where it queued behind the job's backlog",
                    ms(Some(theirs))
                ),
                (Some(theirs), _) => format!(" ({} beside the limited job)", ms(Some(theirs))),
                _ => String::new(),
            };
            say(
                "batch:",
                &format!(
                    "the same functions, as batch work through batch::job({BATCH_IN_PROGRESS}) over the \
                     customers interleaved by group (the large account spread over the whole run, \
                     at most {BATCH_IN_PROGRESS} customers in memory): the online probe went first \
                     on every limiter, its worst wait {}{beside}.",
                    ms(mine),
                ),
            );
        }
        Mode::Limited => {
            let failed_requests = r.client.seen_503 + r.client.seen_other;
            let healed = if r.failed == 0 {
                format!("all {failed_requests}")
            } else {
                format!("most of the {failed_requests}")
            };
            say(
                "limited:",
                &format!(
                    "never more than {USERS_MAX} and {ADDRESSES_MAX} in flight, so nothing was shed; \
                     {} retries healed {healed} requests that failed at random; {} of {} group \
                     lookups joined a lookup already in flight, {} ran.",
                    r.client.retries,
                    r.client.group_shared,
                    r.client.group_calls(),
                    r.client.group_runs,
                ),
            );
            for name in ["users", "addresses"] {
                if let Some(limiter) = limit_runtime::limiter(name) {
                    let s = limiter.stats();
                    println!(
                        "         limiter {:<11} max {:>2}, peak {:>2} running, {} of {} calls queued, longest wait {}",
                        format!("{:?}", s.name),
                        s.max,
                        s.peak_active,
                        s.waited,
                        s.acquired,
                        secs(s.wait_max),
                    );
                }
            }
            if r.failed > 0 {
                if let Some(e) = &r.example_failure {
                    println!(
                        "         {} customers failed all the same, e.g. {e}",
                        r.failed
                    );
                }
            }
        }
    }
}

/// Prints `text` after `label`, wrapped at 88 columns, indented 9.
fn say(label: &str, text: &str) {
    let mut line = format!("{label:<8}");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 88 && line.trim().len() > label.len() {
            println!("{line}");
            line = " ".repeat(8);
        }
        line.push(' ');
        line.push_str(word);
    }
    println!("{line}");
}
