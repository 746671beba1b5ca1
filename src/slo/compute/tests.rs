use super::*;
use proptest::prelude::*;

const M: i64 = MINUTE_MS;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn start(
    vm: u128,
    node: Option<u128>,
    req: i64,
    ok: bool,
    code: Option<&str>,
    running: Option<i64>,
) -> StartRow {
    StartRow {
        vm_id: id(vm),
        course_id: Some(id(100)),
        node_id: node.map(id),
        requested_ms: req,
        ok,
        error_code: code.map(str::to_owned),
        running_ms: running,
        first_frame_ms: None,
    }
}

fn session(
    vm: u128,
    issued: i64,
    opened: Option<i64>,
    est: Option<i64>,
    ended: Option<(i64, EndedBy)>,
) -> SessionRow {
    SessionRow {
        vm_id: id(vm),
        node_id: Some(id(9)),
        issued_ms: issued,
        opened_ms: opened,
        established_ms: est,
        ended_ms: ended.map(|e| e.0),
        ended_by: ended.map(|e| e.1),
    }
}

#[test]
fn a_session_ended_just_before_its_node_went_down_is_an_error() {
    let down = |at| NodeTransition {
        node_id: id(9),
        at_ms: at,
        down: true,
    };
    let rows = vec![
        // Its stream closed 8 s before the node was called down.
        session(1, 0, Some(0), Some(0), Some((100_000, EndedBy::System))),
        // Long before: a VM stopped by its user.
        session(2, 0, Some(0), Some(0), Some((10_000, EndedBy::System))),
        // The user closed it: stays the user's.
        session(3, 0, Some(0), Some(0), Some((100_000, EndedBy::User))),
    ];
    let got = reclassify(&rows, &[down(108_000)]);
    let ends: Vec<_> = got.iter().map(|s| s.ended_by).collect();
    assert_eq!(
        ends,
        vec![
            Some(EndedBy::Error),
            Some(EndedBy::System),
            Some(EndedBy::User)
        ]
    );
    // Another node's outage changes nothing.
    let other = NodeTransition {
        node_id: id(8),
        at_ms: 108_000,
        down: true,
    };
    assert_eq!(reclassify(&rows, &[other]), rows);
}

#[test]
fn start_figures_by_hand() {
    let w = Window {
        from_ms: 0,
        to_ms: 100 * M,
    };
    let mut f_ok = start(1, Some(9), 0, true, None, Some(10_000));
    f_ok.first_frame_ms = Some(14_000);
    let rows = vec![
        f_ok,
        start(2, Some(9), M, true, None, Some(M + 30_000)),
        start(3, Some(9), 2 * M, false, Some("libvirt"), None),
        // The user's own doing: no attempt.
        start(4, None, 3 * M, false, Some("vm_stopping"), None),
        // Outside the window.
        start(5, Some(9), 200 * M, true, None, Some(200 * M + 1000)),
    ];
    let f = start_figures(&rows, w, 20_000);
    assert_eq!((f.attempts, f.ok, f.failed), (3, 2, 1));
    assert_eq!(f.success_rate, Some(2.0 / 3.0));
    // Nearest rank over [10, 30]: p50 is the first, p95 the second.
    assert_eq!(f.running_p50_seconds, Some(10.0));
    assert_eq!(f.running_p95_seconds, Some(30.0));
    assert_eq!(f.first_frame_p50_seconds, Some(14.0));
    assert_eq!(f.within_target, 1);
    let none = start_figures(&[], w, 1);
    assert_eq!(none.success_rate, None);
    assert_eq!(none.running_p95_seconds, None);
}

#[test]
fn console_figures_by_hand() {
    let w = Window {
        from_ms: 0,
        to_ms: 20 * M,
    };
    let rows = vec![
        // Issued, never used (or refused for its Origin): no attempt.
        session(1, 0, None, None, None),
        // 10 minutes, closed by the user.
        session(1, 0, Some(0), Some(0), Some((10 * M, EndedBy::User))),
        // The node did not answer.
        session(2, M, Some(M), None, Some((M + 500, EndedBy::Error))),
        // Still open at the window's end: 15 minutes so far.
        session(2, 5 * M, Some(5 * M), Some(5 * M), None),
        // Issued before the window, its minutes in the window still count.
        session(
            3,
            -10 * M,
            Some(-10 * M),
            Some(-10 * M),
            Some((2 * M, EndedBy::System)),
        ),
    ];
    let f = console_figures(&rows, w);
    assert_eq!(
        (f.issued, f.attempts, f.established, f.errors),
        (4, 3, 2, 1)
    );
    assert_eq!((f.ended_by_user, f.ended_by_system), (1, 0));
    assert_eq!(f.success_rate, Some(2.0 / 3.0));
    assert!(
        (f.session_minutes - 27.0).abs() < 1e-9,
        "{}",
        f.session_minutes
    );
    // 0..10, 5..20 and 0..2 (clipped): three open at once in 0..2? No:
    // 5..20 starts after 2. Two at once.
    assert_eq!(f.peak_concurrent, 2);
}

#[test]
fn down_intervals_by_hand() {
    let n = id(9);
    let t = |at: i64, down: bool| NodeTransition {
        node_id: n,
        at_ms: at,
        down,
    };
    let w = Window {
        from_ms: 0,
        to_ms: 60,
    };
    // Down before the window, back at 5; down 10..20 (a repeated down in
    // between changes nothing); down from 50 to the end.
    let got = down_intervals(
        &[
            t(50, true),
            t(-5, true),
            t(5, false),
            t(10, true),
            t(12, true),
            t(20, false),
            t(30, false),
        ],
        w,
    );
    assert_eq!(got[&n], vec![(0, 5), (10, 20), (50, 60)]);
}

#[test]
fn availability_by_hand() {
    let (n, m) = (9, 8);
    let w = Window {
        from_ms: 0,
        to_ms: 200 * M,
    };
    let starts = vec![
        // VM 1 runs on n from minute 1; n is down 30..40; a console error at
        // 50, the next session connects at 55: 15 minutes of 90 unusable.
        start(1, Some(n), 0, true, None, Some(M)),
        // VM 2 fails at 0, works from the retry at 20 (on m): 20 of 110.
        start(2, None, 0, false, Some("libvirt"), None),
        start(2, Some(m), 20 * M, true, None, Some(21 * M)),
    ];
    let sessions = vec![
        session(
            1,
            49 * M,
            Some(49 * M),
            None,
            Some((50 * M, EndedBy::Error)),
        ),
        session(
            1,
            55 * M,
            Some(55 * M),
            Some(55 * M),
            Some((60 * M, EndedBy::User)),
        ),
    ];
    let mut down = HashMap::new();
    down.insert(id(n), vec![(30 * M, 40 * M)]);
    let a = availability(&starts, &sessions, &down, w);
    assert!((a.overall.wanted_minutes - 200.0).abs() < 1e-9);
    assert!((a.overall.unusable_minutes - 35.0).abs() < 1e-9);
    assert_eq!(a.overall.ratio, Some(165.0 / 200.0));
    assert_eq!(a.per_node[&id(n).to_string()].ratio, Some(75.0 / 90.0));
    assert_eq!(a.per_node[&id(m).to_string()].ratio, Some(1.0));
    assert_eq!(a.per_course[&id(100).to_string()].unusable_minutes, 35.0);
    // A window that starts later sees only its part of the wanted time.
    let late = availability(
        &starts,
        &sessions,
        &down,
        Window {
            from_ms: 35 * M,
            to_ms: 200 * M,
        },
    );
    // VM 1: 35..90 wanted, 35..40 + 50..55 unusable; VM 2: 35..110, none.
    assert!((late.overall.wanted_minutes - 130.0).abs() < 1e-9);
    assert!((late.overall.unusable_minutes - 10.0).abs() < 1e-9);
}

#[test]
fn figures_node_availability_and_peak_vms() {
    let w = Window {
        from_ms: 0,
        to_ms: 100 * M,
    };
    let inputs = Inputs {
        transitions: vec![
            NodeTransition {
                node_id: id(9),
                at_ms: 10 * M,
                down: true,
            },
            NodeTransition {
                node_id: id(9),
                at_ms: 20 * M,
                down: false,
            },
        ],
        nodes: vec![(id(9), "n9".into()), (id(8), "n8".into())],
        vm_samples: vec![
            (id(9), 0, 3),
            (id(8), 0, 4),
            (id(9), M, 6),
            (id(8), M, 0),
            (id(8), 500 * M, 99),
        ],
        ..Inputs::default()
    };
    let f = figures(&inputs, w, 120_000);
    assert_eq!(f.nodes[0].down_minutes, 10.0);
    assert_eq!(f.nodes[0].availability, Some(0.9));
    assert_eq!(f.nodes[1].availability, Some(1.0));
    assert_eq!(f.peak_concurrent_vms, 7);
    let t = tally(Indicator::NodeAvailability, &f, w.len_ms());
    assert_eq!((t.good, t.total), (190.0, 200.0));
}

#[test]
fn budget_and_burn_by_hand() {
    let t = Tally {
        good: 995.0,
        total: 1000.0,
    };
    assert!((budget_left(t, 0.01).unwrap_or(f64::NAN) - 0.5).abs() < 1e-9);
    assert!((burn_rate(t, 0.01).unwrap_or(f64::NAN) - 0.5).abs() < 1e-9);
    // Overspent: 2 % bad of 1 % allowed.
    let t = Tally {
        good: 98.0,
        total: 100.0,
    };
    assert!((budget_left(t, 0.01).unwrap_or(f64::NAN) + 1.0).abs() < 1e-9);
    assert!((burn_rate(t, 0.01).unwrap_or(f64::NAN) - 2.0).abs() < 1e-9);
    assert_eq!(budget_left(Tally::default(), 0.01), None);
    assert_eq!(burn_rate(Tally::default(), 0.01), None);
}

#[test]
fn ticket_response_by_hand() {
    // 19 answered in time, 1 breach: 95 % — exactly the default target.
    let inputs = Inputs {
        ticket_response: TicketResponse {
            met: 19,
            breached: 1,
        },
        ..Inputs::default()
    };
    let w = Window {
        from_ms: 0,
        to_ms: HOUR_MS,
    };
    let f = figures(&inputs, w, 1000);
    let t = tally(Indicator::TicketResponse, &f, w.len_ms());
    assert_eq!((t.good, t.total), (19.0, 20.0));
    let objs = objectives(
        Measured {
            figures: &f,
            window_ms: w.len_ms(),
        },
        Measured {
            figures: &f,
            window_ms: w.len_ms(),
        },
        Measured {
            figures: &f,
            window_ms: w.len_ms(),
        },
        &BTreeMap::new(),
    );
    let o = objs
        .iter()
        .find(|o| o.indicator == Indicator::TicketResponse)
        .expect("the ticket-response objective");
    assert_eq!((o.target, o.met), (0.95, Some(true)));
    assert!(o.actual.is_some_and(|a| (a - 0.95).abs() < 1e-9));
    // 5 % bad of the 5 % allowed: on budget, all of it spent.
    assert!(o.burn_rate_1h.is_some_and(|b| (b - 1.0).abs() < 1e-9));
    assert!(o.budget_left.is_some_and(|b| b.abs() < 1e-9));
    // No ticket answered or breached: no figure.
    let none = tally(Indicator::TicketResponse, &Figures::default(), HOUR_MS);
    assert_eq!(none.total, 0.0);
}

#[test]
fn capacity_by_hand() {
    use crate::alerts::{DAY, Point};
    let now = 100 * DAY;
    // 1 point a day up over the last 4 days, to 50 %: 50 days to 100 %.
    let pts: Vec<Point> = (0..5)
        .map(|k| Point {
            at: now - (4 - k) * DAY,
            value: 46.0 + f64::from(u8::try_from(k).expect("k")),
        })
        .collect();
    let c = capacity("store", "n1".into(), &pts, now);
    assert_eq!(c.used_percent, Some(50.0));
    assert!(
        c.days_until_full.is_some_and(|d| (d - 50.0).abs() < 1e-6),
        "{c:?}"
    );
    // Flat: no date; nothing recorded: nothing known.
    let flat: Vec<Point> = pts.iter().map(|p| Point { value: 50.0, ..*p }).collect();
    assert_eq!(
        capacity("store", "n1".into(), &flat, now).days_until_full,
        None
    );
    let none = capacity("layer_storage", String::new(), &[], now);
    assert_eq!((none.used_percent, none.days_until_full), (None, None));
}

#[test]
fn alert_signals_by_hand() {
    let mut f = Figures::default();
    f.consoles.attempts = 10;
    f.consoles.errors = 1;
    f.starts.attempts = 4;
    f.starts.ok = 3;
    f.starts.within_target = 3;
    let targets = BTreeMap::from([(Indicator::StartSuccess, 0.9)]);
    let s = alert_signals(&f, HOUR_MS, &targets);
    let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
    assert!(near(s.console_error_percent, 10.0), "{s:?}");
    assert!(near(s.start_failure_percent, 25.0), "{s:?}");
    let burn = |i| s.burn_rates.iter().find(|b| b.0 == i).and_then(|b| b.1);
    // 10 % bad of the default 0.5 % allowed: 20; 25 % of the set 10 %: 2.5.
    assert!(near(burn(Indicator::ConsoleSuccess), 20.0), "{s:?}");
    assert!(near(burn(Indicator::StartSuccess), 2.5), "{s:?}");
    // All within the p95 target: no burn; nothing wanted: no rate.
    assert!(near(burn(Indicator::StartP95), 0.0), "{s:?}");
    assert_eq!(burn(Indicator::VmAvailability), None);
    assert_eq!(s.burn_rates.len(), Indicator::ALL.len());
    // No attempts: no share (an idle hour alerts nothing).
    let idle = alert_signals(&Figures::default(), HOUR_MS, &BTreeMap::new());
    assert_eq!(
        (idle.console_error_percent, idle.start_failure_percent),
        (None, None)
    );
}

#[test]
fn objectives_by_hand() {
    let w = Window {
        from_ms: 0,
        to_ms: 100 * M,
    };
    let inputs = Inputs {
        starts: (0..20)
            .map(|i| {
                start(
                    i,
                    Some(9),
                    i as i64 * M,
                    true,
                    None,
                    Some(i as i64 * M + if i == 0 { 200_000 } else { 10_000 }),
                )
            })
            .collect(),
        nodes: vec![(id(9), "n9".into())],
        ..Inputs::default()
    };
    let f = figures(&inputs, w, 120_000);
    let hour = figures(&inputs, w.last_hour(), 120_000);
    let mut targets = BTreeMap::new();
    targets.insert(Indicator::StartP95, 120.0);
    let six_w = w.last(6 * HOUR_MS);
    let six = figures(&inputs, six_w, 120_000);
    let objs = objectives(
        Measured {
            figures: &f,
            window_ms: w.len_ms(),
        },
        Measured {
            figures: &hour,
            window_ms: w.last_hour().len_ms(),
        },
        Measured {
            figures: &six,
            window_ms: six_w.len_ms(),
        },
        &targets,
    );
    let p95 = objs
        .iter()
        .find(|o| o.indicator == Indicator::StartP95)
        .expect("p95");
    // The starts were all in the first 20 minutes: none in the last hour,
    // all in the last six hours (the whole 100-minute window), where the
    // one slow start of 20 burns the 5 % allowed at exactly 1×.
    assert_eq!(p95.burn_rate_1h, None);
    assert!(
        p95.burn_rate_6h.is_some_and(|b| (b - 1.0).abs() < 1e-9),
        "{p95:?}"
    );
    // 19 of 20 within 120 s: p95 by nearest rank is the 19th (10 s), and
    // one slow start of the 5 % allowed (1 of 20) spends the whole budget.
    assert_eq!(p95.actual, Some(10.0));
    assert_eq!(p95.met, Some(true));
    assert_eq!((p95.good, p95.total), (19.0, 20.0));
    assert!(p95.budget_left.unwrap_or(f64::NAN).abs() < 1e-9);
    let consoles = objs
        .iter()
        .find(|o| o.indicator == Indicator::ConsoleSuccess)
        .expect("console");
    assert_eq!(
        (consoles.actual, consoles.budget_left, consoles.burn_rate_1h),
        (None, None, None)
    );
    let starts = objs
        .iter()
        .find(|o| o.indicator == Indicator::StartSuccess)
        .expect("starts");
    assert_eq!(
        (starts.actual, starts.met, starts.budget_left),
        (Some(1.0), Some(true), Some(1.0))
    );
}

#[test]
fn levels() {
    assert_eq!(level_from_burn(None), Level::Green);
    assert_eq!(level_from_burn(Some(1.0)), Level::Green);
    assert_eq!(level_from_burn(Some(1.5)), Level::Amber);
    assert_eq!(level_from_burn(Some(RED_BURN)), Level::Red);
    assert_eq!(node_level(0, 3), Level::Green);
    assert_eq!(node_level(1, 3), Level::Amber);
    assert_eq!(node_level(3, 3), Level::Red);
    assert_eq!(node_level(0, 0), Level::Red);
    assert_eq!(desk_level(&[]), Level::Green);
    assert_eq!(desk_level(&["P3".into()]), Level::Amber);
    assert_eq!(desk_level(&["P3".into(), "P1".into()]), Level::Red);
}

#[test]
fn indicator_targets_validate() {
    for i in Indicator::ALL {
        assert_eq!(Indicator::parse(i.as_str()), Some(i));
        assert!(i.valid(i.default_target()));
    }
    assert!(!Indicator::ConsoleSuccess.valid(1.0));
    assert!(!Indicator::ConsoleSuccess.valid(f64::NAN));
    assert!(!Indicator::StartP95.valid(0.0));
}

proptest! {
    #[test]
    fn union_is_between_the_longest_and_the_sum(v in prop::collection::vec((0i64..1000, 0i64..200), 0..30)) {
        let mut iv: Vec<(i64, i64)> = v.iter().map(|&(a, l)| (a, a + l)).collect();
        let sum: i64 = iv.iter().map(|(a, b)| b - a).sum();
        let longest = iv.iter().map(|(a, b)| b - a).max().unwrap_or(0);
        let u = union_ms(&mut iv);
        prop_assert!(u <= sum && u >= longest);
    }

    #[test]
    fn peak_is_at_most_the_count(v in prop::collection::vec((0i64..1000, 1i64..200), 0..30)) {
        let iv: Vec<(i64, i64)> = v.iter().map(|&(a, l)| (a, a + l)).collect();
        let p = peak_concurrent(&iv);
        prop_assert!(p as usize <= iv.len());
        prop_assert!(iv.is_empty() || p >= 1);
    }

    #[test]
    fn availability_is_a_ratio(
        starts in prop::collection::vec((0u128..4, 0i64..500, any::<bool>(), 0i64..5), 0..20),
        downs in prop::collection::vec((0i64..500, 0i64..100), 0..5),
        from in 0i64..300,
    ) {
        let rows: Vec<StartRow> = starts.iter().map(|&(vm, req, ok, d)| start(vm, Some(9), req * M, ok, (!ok).then_some("libvirt"), ok.then_some(req * M + d * M))).collect();
        let mut down = HashMap::new();
        down.insert(id(9), downs.iter().map(|&(a, l)| (a * M, (a + l) * M)).collect::<Vec<_>>());
        let w = Window { from_ms: from * M, to_ms: 600 * M };
        let a = availability(&rows, &[], &down, w);
        prop_assert!(a.overall.unusable_minutes <= a.overall.wanted_minutes + 1e-9);
        prop_assert!(a.overall.unusable_minutes >= 0.0);
        if let Some(r) = a.overall.ratio { prop_assert!((0.0..=1.0).contains(&r)); }
        // Each VM is wanted at most from `from` to the end.
        prop_assert!(a.overall.wanted_minutes <= 4.0 * (600 - from) as f64 + 1e-9);
    }
}
