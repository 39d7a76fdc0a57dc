//! The batch demonstration (`examples/batch.rs`) in a small mode: what it
//! claims holds. Real HTTP on loopback, real time; no assertion on durations.

use limit_demo as demo;

use demo::cli::{self, Command, Options};
use demo::client::{ADDRESSES_MAX, USERS_MAX};
use demo::job::{self, Mode};
use demo::service::USERS_CAPACITY;

const ITEMS: usize = 300;
const SEED: u64 = 7;

// One test runs both jobs, one after the other: the limiters and the
// client's counters are process-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limited_job_stays_within_limits_recovers_everything_and_shares_group_calls() {
    let customers = demo::data::customers(ITEMS, SEED);
    let groups: std::collections::HashSet<u64> = customers.iter().map(|c| c.group).collect();

    let naive = job::run(Mode::Naive, &customers, SEED, |_| {})
        .await
        .expect("the services start");
    // 300 customers fire 600 requests at a user service that handles 20
    // (each group request takes 120 ms): it must shed load.
    assert!(
        naive.peak_to_users > USERS_CAPACITY * 5,
        "the naive job floods the user service: {naive:#?}"
    );
    assert!(naive.users.shed > 0, "the service shed load: {naive:#?}");
    assert!(
        naive.client.seen_503 > 0,
        "the naive job saw 503s: {naive:#?}"
    );
    assert!(naive.failed > 0, "{naive:#?}");
    assert_eq!(naive.client.retries, 0);
    assert_eq!(naive.client.group_calls(), 0, "plain calls do not coalesce");

    let limited = job::run(Mode::Limited, &customers, SEED, |_| {})
        .await
        .expect("the services start");
    assert_eq!(
        limited.failed, 0,
        "no unrecovered failure; first: {:?}",
        limited.example_failure
    );
    assert_eq!(limited.done, ITEMS);

    // The limits, seen by the services themselves, by the client, and by
    // the runtime.
    assert!(
        limited.users.peak_in_flight <= USERS_MAX,
        "user service saw {} at once",
        limited.users.peak_in_flight
    );
    assert!(
        limited.addresses.peak_in_flight <= ADDRESSES_MAX,
        "address service saw {} at once",
        limited.addresses.peak_in_flight
    );
    assert!(limited.peak_to_users <= USERS_MAX);
    assert!(limited.peak_to_addresses <= ADDRESSES_MAX);
    for (name, max) in [("users", USERS_MAX), ("addresses", ADDRESSES_MAX)] {
        let stats = limit_runtime::limiter(name)
            .unwrap_or_else(|| panic!("limiter {name:?} exists after the run"))
            .stats();
        assert_eq!(stats.max, max, "{stats:?}");
        assert!(stats.peak_active <= max, "{stats:?}");
        assert!(
            stats.peak_active >= 2,
            "calls did run concurrently: {stats:?}"
        );
        assert_eq!((stats.active, stats.waiting), (0, 0), "{stats:?}");
    }
    // Within capacity, the services never shed load.
    assert_eq!(
        limited.users.shed + limited.addresses.shed,
        0,
        "{limited:#?}"
    );

    // Random failures happened, and the runtime's counters say retries
    // healed every one of them.
    let failed_requests = limited.client.seen_503 + limited.client.seen_other;
    assert!(
        failed_requests > 0,
        "seed {SEED} draws some failures: {limited:#?}"
    );
    assert_eq!(limited.client.retries, failed_requests, "{limited:#?}");
    assert_eq!(limited.client.gave_up, 0, "{limited:#?}");

    // Coalescing: one group call per customer, far fewer runs.
    assert_eq!(limited.client.group_calls(), ITEMS as u64, "{limited:#?}");
    assert!(limited.client.group_runs >= groups.len() as u64);
    assert!(
        limited.client.group_shared > ITEMS as u64 / 2,
        "{limited:#?}"
    );
    assert!(
        !limited.online.is_empty(),
        "the online probe ran beside the job"
    );

    // The same job as batch work through the driver, groups interleaved.
    let waited_batch_before = limit_runtime::limiter("users")
        .unwrap()
        .stats()
        .waited_batch;
    let batch = job::run(Mode::Batch, &customers, SEED, |_| {})
        .await
        .expect("the services start");
    assert_eq!(batch.failed, 0, "first: {:?}", batch.example_failure);
    assert_eq!(batch.done, ITEMS);
    assert!(batch.users.peak_in_flight <= USERS_MAX, "{batch:#?}");
    assert!(
        batch.addresses.peak_in_flight <= ADDRESSES_MAX,
        "{batch:#?}"
    );
    assert_eq!(batch.users.shed + batch.addresses.shed, 0, "{batch:#?}");
    assert!(
        !batch.online.is_empty(),
        "the online probe ran beside the job"
    );
    let users = limit_runtime::limiter("users").unwrap().stats();
    assert!(
        users.waited_batch > waited_batch_before,
        "the job's calls queued as batch work: {users:?}"
    );
    assert_eq!((users.active, users.waiting, users.batch_active), (0, 0, 0));

    // An outage of the address service, without and with a breaker.
    let without = job::run_outage(&customers, SEED, false)
        .await
        .expect("services start");
    let with = job::run_outage(&customers, SEED, true)
        .await
        .expect("services start");
    // What holds on any machine (the outage is real time over real HTTP,
    // so how many requests each run sends while the service is down, and
    // how many customers outlast it, depend on speed; the demonstration's
    // table shows them at scale): the outage happened, the breaker opened
    // with one clear message and refused calls, which paused their
    // customers, and every customer is accounted for.
    assert!(without.sent_while_down > 0, "{without:#?}");
    assert_eq!(without.refused, 0);
    assert_eq!(with.done + with.failed, ITEMS);
    assert_eq!(without.done + without.failed, ITEMS);
    let message = with.message.as_deref().expect("the breaker opened");
    assert!(
        message.starts_with("breaker \"addresses\": circuit open"),
        "{message}"
    );
    assert!(with.refused > 0, "{with:#?}");
}

#[test]
fn the_input_has_one_large_clustered_group_that_interleaving_spreads() {
    let customers = demo::data::customers(3000, 1);
    let mut sizes = std::collections::HashMap::new();
    for c in &customers {
        *sizes.entry(c.group).or_insert(0usize) += 1;
    }
    let (&big, &size) = sizes.iter().max_by_key(|(_, n)| **n).unwrap();
    let average = customers.len() / sizes.len();
    assert!(size >= 5 * average, "{size} vs {average}");
    let at: Vec<usize> = (0..customers.len())
        .filter(|&i| customers[i].group == big)
        .collect();
    assert_eq!(
        at.last().unwrap() - at[0] + 1,
        size,
        "clustered in one block"
    );
    let order = limit_runtime::batch::interleave_by(customers.iter().copied(), |c| c.group);
    let at: Vec<usize> = (0..order.len())
        .filter(|&i| order[i].group == big)
        .collect();
    assert!(
        at[0] < 20 && *at.last().unwrap() > order.len() - 20,
        "spread over the whole run"
    );
}

#[test]
fn the_command_line_rejects_bad_input_with_a_message() {
    let parse = |args: &[&str]| cli::parse(args.iter().map(|a| a.to_string()));
    assert_eq!(parse(&[]), Ok(Command::Run(Options::default())));
    assert_eq!(
        parse(&["--items", "200", "--seed=9", "--only", "naive"]),
        Ok(Command::Run(Options {
            items: 200,
            seed: 9,
            only: Some(Mode::Naive),
            outage: false,
            adaptive: false,
        }))
    );
    assert_eq!(
        parse(&["--adaptive"]),
        Ok(Command::Run(Options {
            adaptive: true,
            ..Options::default()
        }))
    );
    assert_eq!(parse(&["-h"]), Ok(Command::Help));
    for (bad, says) in [
        (&["--items"][..], "--items needs a value"),
        (&["--items", "0"], "--items takes a number from 1 to 50000"),
        (&["--items", "lots"], "--items takes a number"),
        (&["--seed", "-1"], "--seed takes a non-negative integer"),
        (
            &["--only", "fast"],
            "--only takes `naive`, `limited` or `batch`",
        ),
        (&["--verbose"], "unknown argument \"--verbose\""),
    ] {
        let err = parse(bad).expect_err(&format!("{bad:?} is rejected"));
        assert!(err.contains(says), "{bad:?}: {err}");
    }
}

// The adaptive-limit run (`--adaptive`): what it claims that does not depend
// on how fast this machine is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adaptive_run_accounts_for_every_item_and_stays_within_the_service() {
    use demo::scale::{self, Strategy};
    let fixed = scale::run_scale(Strategy::FixedLimit, SEED).await.unwrap();
    let adaptive = scale::run_scale(Strategy::Adaptive, SEED).await.unwrap();
    for r in [&fixed, &adaptive] {
        assert_eq!(r.ok + r.shed + r.other_errors, scale::ITEMS, "{r:#?}");
        assert_eq!(r.other_errors, 0, "{r:#?}");
    }
    // The fixed limit never goes past the number it was given...
    assert_eq!(fixed.peak_in_flight, scale::START_CAPACITY);
    assert_eq!(fixed.shed, 0);
    // ...the adaptive one found its own, with few overload answers. The
    // release build sees none; a debug build, slower, sometimes overshoots
    // twice the capacity once while doubling from `initial` (20 at once,
    // against 12) and takes one burst of about 20 `503`s before the cut
    // (measured: 0 or 21-23 over twelve runs). More than 2.5 % would be a
    // second burst: the limit failing to stay down after the cut.
    assert!(adaptive.shed <= scale::ITEMS / 40, "{adaptive:#?}");
    let l = limit_runtime::limiter("scale-adaptive").unwrap();
    let stats = l.stats();
    assert!(stats.adaptive && stats.samples > 1000, "{stats:#?}");
    assert!(stats.baseline.is_some(), "{stats:#?}");
}
