//! Adaptive limits against the best fixed limit, on the simulated service
//! of `tests/support/sim.rs`, under tokio's paused clock (a minute of
//! traffic per run, in well under a second of real time).
//!
//! `cargo bench --bench adaptive` prints the table quoted in BENCHMARKS.md
//! and redraws the pictures in `docs/adaptive/` (SVG, from this run's own
//! data). Every ratio compares runs of the same scenario: the adaptive
//! limit, and a sweep of fixed limits from which the best is taken.

#[path = "../tests/support/sim.rs"]
mod sim;

use std::fmt::Write as _;
use std::time::Duration;

use limit_runtime::{AdaptiveOptions, Limiter};
use plotters::prelude::*;
use sim::{Run, Scenario, Shape};

/// Capacity (calls at once at full speed) and unloaded latency.
const C: usize = 50;
const L: Duration = Duration::from_millis(20);
const WORKERS: usize = 400;
const LENGTH: Duration = Duration::from_secs(60);
/// When something happens to the service.
const AT: Duration = Duration::from_secs(20);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn adaptive(min: usize) -> Limiter {
    Limiter::adaptive("bench-adaptive", 1000, AdaptiveOptions::new().min(min))
}

struct Row {
    scenario: &'static str,
    target: &'static str,
    best: String,
    measured: String,
    met: bool,
}

struct Picture {
    file: &'static str,
    title: &'static str,
    runs: Vec<(String, Run)>,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used.
    let rt = rt();
    let mut rows = Vec::new();
    let mut pictures = Vec::new();
    let rate = |n: usize, l: Duration| n as f64 / l.as_secs_f64();

    // 1. Unknown capacity, steady.
    rt.block_on(async {
        let sc = Scenario::new(Shape::new(C, L), WORKERS, LENGTH);
        let (n, best) = sc
            .best_fixed(&[25, 35, 45, 50, 55, 60, 75, 100], secs(0.0), LENGTH)
            .await;
        let run = sc.run(&adaptive(1)).await;
        let ratio = run.throughput(secs(0.0), LENGTH) / best.throughput(secs(0.0), LENGTH);
        let over = run.overload_fraction();
        let median = run.median_latency().as_secs_f64() / L.as_secs_f64();
        rows.push(Row {
            scenario: "unknown capacity, steady",
            target: "≥ 0.95× best fixed; overload answers ≤ 0.5 %; median latency ≤ 1.2× unloaded",
            best: format!("max = {n}"),
            measured: format!(
                "{ratio:.3}×; {:.2} %; {median:.2}× (limit at the end: {})",
                over * 100.0,
                run.limit.last().unwrap()
            ),
            met: ratio >= 0.95 && over <= 0.005 && median <= 1.2,
        });
        let low = sc.run(&Limiter::private("fixed", C / 2)).await;
        let high = sc.run(&Limiter::private("fixed", C * 5 / 2)).await;
        pictures.push(Picture {
            file: "steady.svg",
            title: "unknown capacity (50 at once, 20 ms), steady",
            runs: vec![
                ("adaptive".into(), run),
                (format!("fixed {n} (best)"), best),
                (format!("fixed {}", C / 2), low),
                (format!("fixed {}", C * 5 / 2), high),
            ],
        });
    });

    // 2. Capacity ×2.5 mid-run.
    rt.block_on(async {
        let sc = Scenario::new(Shape::new(C, L), WORKERS, LENGTH).capacity_at(AT, C * 5 / 2);
        let after = AT + secs(3.0);
        let (n, best) = sc
            .best_fixed(&[50, 100, 110, 125, 140, 160, 200, 250], after, LENGTH)
            .await;
        let run = sc.run(&adaptive(1)).await;
        let best_rate = best.throughput(after, LENGTH);
        // The first second-long stretch after the change at 0.9× the new best.
        let reached = (0..200).map(|i| AT + secs(i as f64 * 0.1)).find(|&t| {
            run.throughput(t, t + secs(1.0)) >= 0.9 * best_rate
        });
        let in_3s = reached.map(|t| (t + secs(1.0) - AT).as_secs_f64());
        let ratio = run.throughput(after, LENGTH) / best_rate;
        rows.push(Row {
            scenario: "capacity ×2.5 mid-run",
            target: "≥ 0.9× the new best within 3 s",
            best: format!("max = {n} (after the change)"),
            measured: format!(
                "0.9× reached {} s after the change; {ratio:.3}× from 3 s after (limit at the end: {})",
                in_3s.map_or("never".into(), |s| format!("{s:.1}")),
                run.limit.last().unwrap()
            ),
            met: in_3s.is_some_and(|s| s <= 3.0) && ratio >= 0.9,
        });
        let old = sc.run(&Limiter::private("fixed", C)).await;
        pictures.push(Picture {
            file: "scaled_up.svg",
            title: "capacity 50 → 125 at 20 s",
            runs: vec![
                ("adaptive".into(), run),
                (format!("fixed {n} (best after)"), best),
                (format!("fixed {C} (best before)"), old),
            ],
        });
    });

    // 3. Capacity halved mid-run (an incident).
    rt.block_on(async {
        let sc = Scenario::new(Shape::new(C * 2, L), WORKERS, LENGTH).capacity_at(AT, C);
        let run = sc.run(&adaptive(1)).await;
        let last = run.last_overload().filter(|&t| t >= AT);
        let stop = last.map_or(0.0, |t| (t + run.step - AT).as_secs_f64());
        let after = run.throughput(AT + secs(2.0), LENGTH) / rate(C, L);
        rows.push(Row {
            scenario: "capacity halved mid-run",
            target: "overload answers stop within 1 s",
            best: "—".into(),
            measured: format!(
                "last overload answer {stop:.1} s after the incident; then {after:.3}× the new capacity's throughput"
            ),
            met: stop <= 1.0,
        });
        let fixed = sc.run(&Limiter::private("fixed", C * 2)).await;
        pictures.push(Picture {
            file: "halved.svg",
            title: "capacity 100 → 50 at 20 s",
            runs: vec![("adaptive".into(), run), (format!("fixed {}", C * 2), fixed)],
        });
    });

    // 4. Every call times out.
    rt.block_on(async {
        let sc = Scenario::new(Shape::new(C, L), WORKERS, LENGTH).hang_at(AT, secs(1.0));
        let run = sc.run(&adaptive(2)).await;
        let reached = run.limit_reached(AT, 2).map(|t| (t - AT).as_secs_f64());
        let climbed = run.limit[(AT.as_millis() / 100) as usize..]
            .windows(2)
            .any(|w| w[1] > w[0]);
        rows.push(Row {
            scenario: "every call times out (1 s timeout)",
            target: "the limit falls to `min` within 10 s",
            best: "—".into(),
            measured: format!(
                "`min` (2) reached {} s after the service hung; never climbed: {}",
                reached.map_or("never".into(), |s| format!("{s:.1}")),
                !climbed
            ),
            met: reached.is_some_and(|s| s <= 10.0) && !climbed,
        });
        pictures.push(Picture {
            file: "hang.svg",
            title: "every call times out from 20 s",
            runs: vec![("adaptive".into(), run)],
        });
    });

    // 5. Noise and a slow tail.
    rt.block_on(async {
        let sc = Scenario::new(Shape::new(C, L).noisy(0.3, 0.05, 10.0), WORKERS, LENGTH);
        let (n, best) = sc
            .best_fixed(&[35, 45, 50, 55, 60, 75, 100], secs(0.0), LENGTH)
            .await;
        let run = sc.run(&adaptive(1)).await;
        let ratio = run.throughput(secs(0.0), LENGTH) / best.throughput(secs(0.0), LENGTH);
        rows.push(Row {
            scenario: "±30 % latency noise, 5 % of calls 10× slower",
            target: "≥ 0.9× best fixed",
            best: format!("max = {n}"),
            measured: format!(
                "{ratio:.3}× (limit at the end: {})",
                run.limit.last().unwrap()
            ),
            met: ratio >= 0.9,
        });
        pictures.push(Picture {
            file: "noise.svg",
            title: "±30 % noise, 5 % slow tail",
            runs: vec![
                ("adaptive".into(), run),
                (format!("fixed {n} (best)"), best),
            ],
        });
    });

    let mut out = String::new();
    let _ = writeln!(
        out,
        "adaptive limit vs the best fixed limit (simulated service: capacity {C}, unloaded latency {} ms, {WORKERS} callers, {} s per run, paused clock)\n",
        L.as_millis(),
        LENGTH.as_secs()
    );
    let _ = writeln!(out, "| scenario | target | best fixed | adaptive | met |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.scenario,
            r.target,
            r.best,
            r.measured,
            if r.met { "yes" } else { "**no**" }
        );
    }
    print!("{out}");

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/adaptive");
    std::fs::create_dir_all(&dir).expect("docs/adaptive");
    for p in &pictures {
        let path = dir.join(p.file);
        draw(&path, p).unwrap_or_else(|e| panic!("drawing {}: {e}", path.display()));
        println!("wrote {}", path.display());
    }
}

/// Two charts, one above the other: throughput (successes per second, over
/// half-second buckets) and the limit in force, against time.
fn draw(path: &std::path::Path, p: &Picture) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(330);
    let colors = [RED, BLUE, GREEN, MAGENTA];
    let per = 5; // 100 ms buckets per point
    let series = |r: &Run| -> Vec<(f64, f64)> {
        // The last bucket is cut short by the end of the run: left out.
        r.served[..r.served.len() - 1]
            .chunks(per)
            .enumerate()
            .map(|(i, c)| {
                let t = (i * per) as f64 * r.step.as_secs_f64();
                let n: u64 = c.iter().sum();
                (t, n as f64 / (per as f64 * r.step.as_secs_f64()))
            })
            .collect()
    };
    let max_rate = p
        .runs
        .iter()
        .flat_map(|(_, r)| series(r))
        .map(|(_, y)| y)
        .fold(0.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!("{}: calls served per second", p.title),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..LENGTH.as_secs_f64(), 0.0..max_rate.max(1.0))?;
    chart.configure_mesh().x_desc("s").draw()?;
    for (i, (name, run)) in p.runs.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(series(run), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let max_limit = p
        .runs
        .iter()
        .flat_map(|(_, r)| r.limit.iter().copied())
        .max()
        .unwrap_or(1) as f64
        * 1.1;
    let mut chart = ChartBuilder::on(&bottom)
        .caption("the limit in force", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..LENGTH.as_secs_f64(), 0.0..max_limit)?;
    chart.configure_mesh().x_desc("s").draw()?;
    for (i, (name, run)) in p.runs.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points = run.limit[..run.limit.len() - 1]
            .iter()
            .enumerate()
            .map(|(j, &l)| ((j + 1) as f64 * run.step.as_secs_f64(), l as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    root.present()?;
    Ok(())
}
