//! The report's figures: pure functions from the loaded records
//! ([`Records`]) to one struct per section ([`Figures`]). Nothing here reads
//! the database or the clock — [`super::load`] loads the rows and the
//! generation instant is passed in — so every figure is unit-tested over
//! hand-made fixtures.
//!
//! Sections follow seed 002's report: summary; SLA target vs actual with each
//! breach; incidents; engineer workload; satisfaction; resources; service
//! levels. **Adding a section** (e.g. the SLIs from `src/slo/`): add its rows
//! to [`Records`], a field to [`Figures`], its pure `compute` function, its
//! CSV rows in [`Figures::csv_rows`] and its page block in `pdf.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::alerts::Point;
pub use crate::alerts::forecast::Forecast;
use crate::alerts::forecast::days_until_full;
use crate::desk::calendar::Calendar;
use crate::desk::sla::{self, ClockEvent, ClockEventKind, Level, Policy};

/// One ticket as the report needs it (created in the report's range).
#[derive(Debug, Clone)]
pub struct TicketRow {
    pub number: i64,
    pub kind: String,
    pub title: String,
    pub priority: String,
    pub channel: String,
    pub state: String,
    pub created_at: OffsetDateTime,
    pub responded_at: Option<OffsetDateTime>,
    pub resolved_at: Option<OffsetDateTime>,
    pub closed_at: Option<OffsetDateTime>,
    /// The assignee's display name.
    pub assignee: Option<String>,
    pub rating: Option<i64>,
    pub resolution: Option<String>,
    pub reopen_count: i64,
}

/// One event of the cluster's event log in the range (and the last node
/// state change before it, so a node down since before the range counts).
#[derive(Debug, Clone)]
pub struct EventRow {
    pub at: OffsetDateTime,
    pub kind: String,
    pub node: Option<String>,
}

/// One per-minute node sample.
#[derive(Debug, Clone)]
pub struct NodeMinute {
    pub node: String,
    /// Unix seconds.
    pub at: i64,
    pub cpu_percent: Option<f64>,
    pub mem_used_mib: i64,
    pub mem_total_mib: i64,
    pub vms_running: i64,
}

/// One node's per-minute samples of one hour, summed (loading a quarter's
/// minutes row by row is too slow; [`aggregate_minutes`] is the same
/// grouping in Rust, and the SQL in `super::load` mirrors it).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHour {
    pub node: String,
    /// Unix seconds of the hour's start.
    pub hour: i64,
    pub cpu_sum: f64,
    pub cpu_n: i64,
    pub cpu_max: Option<f64>,
    /// Memory used in percent of the total, over samples with a total.
    pub mem_sum: f64,
    pub mem_n: i64,
    pub mem_max: Option<f64>,
    pub vms_max: i64,
}

/// The most VMs running on all nodes together at one minute of an hour.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterHour {
    /// Unix seconds of the hour's start.
    pub hour: i64,
    pub vms_peak: i64,
}

/// Groups per-minute node samples into [`NodeHour`]s and [`ClusterHour`]s.
pub fn aggregate_minutes(samples: &[NodeMinute]) -> (Vec<NodeHour>, Vec<ClusterHour>) {
    let mut nodes: BTreeMap<(&str, i64), NodeHour> = BTreeMap::new();
    let mut minutes: BTreeMap<i64, i64> = BTreeMap::new();
    for s in samples {
        let hour = s.at.div_euclid(3600) * 3600;
        let h = nodes.entry((&s.node, hour)).or_insert_with(|| NodeHour {
            node: s.node.clone(),
            hour,
            cpu_sum: 0.0,
            cpu_n: 0,
            cpu_max: None,
            mem_sum: 0.0,
            mem_n: 0,
            mem_max: None,
            vms_max: 0,
        });
        if let Some(c) = s.cpu_percent {
            h.cpu_sum += c;
            h.cpu_n += 1;
            h.cpu_max = Some(h.cpu_max.map_or(c, |m| m.max(c)));
        }
        if s.mem_total_mib > 0 {
            let m = 100.0 * s.mem_used_mib as f64 / s.mem_total_mib as f64;
            h.mem_sum += m;
            h.mem_n += 1;
            h.mem_max = Some(h.mem_max.map_or(m, |x| x.max(m)));
        }
        h.vms_max = h.vms_max.max(s.vms_running);
        *minutes.entry(s.at.div_euclid(60) * 60).or_insert(0) += s.vms_running;
    }
    let mut cluster: BTreeMap<i64, i64> = BTreeMap::new();
    for (at, n) in minutes {
        let e = cluster.entry(at.div_euclid(3600) * 3600).or_insert(0);
        *e = (*e).max(n);
    }
    (
        nodes.into_values().collect(),
        cluster
            .into_iter()
            .map(|(hour, vms_peak)| ClusterHour { hour, vms_peak })
            .collect(),
    )
}

/// Minutes a VM was seen running (its per-minute samples), with its course.
#[derive(Debug, Clone)]
pub struct VmUsage {
    /// The course code; `None` for template build VMs.
    pub course: Option<String>,
    pub minutes: i64,
}

/// What exists at generation time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Inventory {
    pub nodes: i64,
    pub courses: i64,
    pub students: i64,
    pub vms: i64,
    pub templates: i64,
    pub template_store_bytes: i64,
}

/// Everything a report is computed from.
#[derive(Debug, Clone)]
pub struct Records {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub tickets: Vec<TicketRow>,
    /// Sorted by time; node state changes before `from` included (see [`EventRow`]).
    pub events: Vec<EventRow>,
    pub node_hours: Vec<NodeHour>,
    pub cluster_hours: Vec<ClusterHour>,
    pub vm_usage: Vec<VmUsage>,
    /// Class pre-starts of the sessions that began in the range (`src/slo/`).
    pub class_prestarts: Vec<crate::slo::provisioning::PrestartRow>,
    pub inventory: Inventory,
}

/// Every figure of one report: the JSON snapshot stored with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    pub summary: Summary,
    pub sla: SlaSection,
    pub incidents: Incidents,
    pub workload: Vec<Workload>,
    pub satisfaction: Satisfaction,
    pub resources: Resources,
    pub service_levels: ServiceLevels,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub from: String,
    pub to: String,
    pub tickets: i64,
    pub incidents: i64,
    pub complaints: i64,
    pub response_compliance: Option<f64>,
    pub resolution_compliance: Option<f64>,
    pub satisfaction_average: Option<f64>,
    pub node_availability: Option<f64>,
    pub vm_hours: f64,
    pub peak_concurrent_vms: i64,
    pub inventory: Inventory,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlaPriority {
    pub priority: String,
    pub response_target_minutes: u32,
    pub resolution_target_minutes: u32,
    pub tickets: i64,
    pub response_met: i64,
    pub response_breached: i64,
    pub resolution_met: i64,
    pub resolution_breached: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Breach {
    pub number: i64,
    pub title: String,
    pub priority: String,
    /// `response` or `resolution`.
    pub clock: String,
    pub due_at: Option<String>,
    /// Business minutes past the target (as of the stop, or generation).
    pub over_minutes: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlaSection {
    pub per_priority: Vec<SlaPriority>,
    /// Met / (met + breached), over clocks that concluded or are overdue.
    pub response_compliance: Option<f64>,
    pub resolution_compliance: Option<f64>,
    pub breaches: Vec<Breach>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Times {
    pub count: usize,
    pub p50_minutes: Option<f64>,
    pub p90_minutes: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MajorIncident {
    pub number: i64,
    pub title: String,
    pub created_at: String,
    pub resolved_at: Option<String>,
    pub resolution: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeriodCount {
    pub period: String,
    pub created: i64,
    pub resolved: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Incidents {
    pub total: i64,
    pub by_kind: BTreeMap<String, i64>,
    pub by_channel: BTreeMap<String, i64>,
    pub by_priority: BTreeMap<String, i64>,
    pub response: Times,
    pub resolution: Times,
    /// Of the resolved or closed tickets, the share never reopened.
    pub first_time_fix_rate: Option<f64>,
    pub reopen_rate: Option<f64>,
    /// P1 tickets.
    pub major: Vec<MajorIncident>,
    pub series: Vec<PeriodCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Workload {
    pub name: String,
    pub assigned: i64,
    pub resolved: i64,
    pub handling_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeriodAverage {
    pub period: String,
    pub rated: i64,
    pub average: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Complaint {
    pub number: i64,
    pub title: String,
    pub state: String,
    pub resolution: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Satisfaction {
    /// Counts of ratings "1".."5" (all five keys present).
    pub distribution: BTreeMap<String, i64>,
    pub rated: i64,
    pub average: Option<f64>,
    /// Closed without a rating.
    pub unrated: i64,
    pub trend: Vec<PeriodAverage>,
    pub complaints: Vec<Complaint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeUse {
    pub node: String,
    pub cpu_average: Option<f64>,
    pub cpu_peak: Option<f64>,
    pub mem_average_percent: Option<f64>,
    pub mem_peak_percent: Option<f64>,
    pub vms_peak: i64,
    /// When memory would be full on the trend of the range's hourly
    /// averages (Theil–Sen, as the alerts' store forecasts), seen at `to`.
    pub memory_forecast: Forecast,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CourseHours {
    pub course: String,
    pub hours: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeriodPeak {
    pub period: String,
    pub peak_vms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    pub nodes: Vec<NodeUse>,
    /// The largest sum of running VMs over the nodes at one minute.
    pub peak_concurrent_vms: i64,
    pub peak_trend: Vec<PeriodPeak>,
    pub vm_hours: f64,
    pub hours_per_course: Vec<CourseHours>,
    pub template_store_bytes: i64,
    pub templates: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeAvailability {
    pub node: String,
    pub down_events: i64,
    pub downtime_minutes: f64,
    pub availability: f64,
    pub start_failures: i64,
}

/// **Service levels**: what pvce records today — node availability from the
/// event log's node_down/node_up, VM start failures. The SLIs of VM starts
/// (success rate, time to running) and consoles join here when they are
/// recorded (`src/slo/`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceLevels {
    pub nodes: Vec<NodeAvailability>,
    /// Mean of the nodes' availability.
    pub node_availability: Option<f64>,
    pub vm_start_failures: i64,
    /// Class provisioning time (the SLO page's indicator, without the
    /// per-session list); absent from reports made before it was recorded.
    #[serde(default)]
    pub class_provisioning: crate::slo::provisioning::ProvisioningFigures,
}

/// Computes every section. `now` is the generation instant: SLA clocks still
/// running are judged as of `min(now, to)`.
pub fn compute(r: &Records, policy: &Policy, calendar: &Calendar, now: OffsetDateTime) -> Figures {
    let sla = sla_section(r, policy, calendar, now.min(r.to));
    let incidents = incidents(r);
    let satisfaction = satisfaction(r);
    let resources = resources(r);
    let service_levels = service_levels(r);
    let summary = Summary {
        from: fmt(r.from),
        to: fmt(r.to),
        tickets: incidents.total,
        incidents: incidents.by_kind.get("incident").copied().unwrap_or(0),
        complaints: incidents.by_kind.get("complaint").copied().unwrap_or(0),
        response_compliance: sla.response_compliance,
        resolution_compliance: sla.resolution_compliance,
        satisfaction_average: satisfaction.average,
        node_availability: service_levels.node_availability,
        vm_hours: resources.vm_hours,
        peak_concurrent_vms: resources.peak_concurrent_vms,
        inventory: r.inventory.clone(),
    };
    Figures {
        summary,
        sla,
        incidents,
        workload: workload(r),
        satisfaction,
        resources,
        service_levels,
    }
}

fn fmt(t: OffsetDateTime) -> String {
    crate::db::format_time(t)
}

fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Rounded to 2 decimals, so figures compare and print cleanly.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Trend buckets: days for a range up to 31 days, ISO weeks up to 120 days,
/// months beyond.
pub fn period_key(range: Duration, t: OffsetDateTime) -> String {
    if range <= Duration::days(31) {
        format!("{}", t.date())
    } else if range <= Duration::days(120) {
        let (y, w, _) = t.date().to_iso_week_date();
        format!("{y}-W{w:02}")
    } else {
        format!("{}-{:02}", t.year(), u8::from(t.month()))
    }
}

fn sla_priority(p: &str) -> Option<sla::Priority> {
    Some(match p {
        "P1" => sla::Priority::P1,
        "P2" => sla::Priority::P2,
        "P3" => sla::Priority::P3,
        "P4" => sla::Priority::P4,
        _ => return None,
    })
}

fn sla_section(
    r: &Records,
    policy: &Policy,
    calendar: &Calendar,
    now: OffsetDateTime,
) -> SlaSection {
    let mut per: Vec<SlaPriority> = sla::Priority::ALL
        .iter()
        .map(|&p| {
            let t = policy.target(p);
            SlaPriority {
                priority: p.as_str().into(),
                response_target_minutes: t.response_minutes,
                resolution_target_minutes: t.resolution_minutes,
                tickets: 0,
                response_met: 0,
                response_breached: 0,
                resolution_met: 0,
                resolution_breached: 0,
            }
        })
        .collect();
    let mut breaches = Vec::new();
    for t in &r.tickets {
        let Some(p) = sla_priority(&t.priority) else {
            continue;
        };
        let mut history = vec![ClockEvent::new(t.created_at, ClockEventKind::Opened)];
        for (at, kind) in [
            (t.responded_at, ClockEventKind::Responded),
            (t.resolved_at, ClockEventKind::Resolved),
            (t.closed_at, ClockEventKind::Closed),
        ] {
            if let Some(at) = at {
                history.push(ClockEvent::new(at, kind));
            }
        }
        history.sort_by_key(|e| e.at);
        let ev = sla::evaluate(&history, p, policy, calendar, now);
        let row = &mut per[p as usize];
        row.tickets += 1;
        for (name, clock) in [("response", &ev.response), ("resolution", &ev.resolution)] {
            let (met, breached) = if name == "response" {
                (&mut row.response_met, &mut row.response_breached)
            } else {
                (&mut row.resolution_met, &mut row.resolution_breached)
            };
            if clock.level == Level::Breached {
                *breached += 1;
                breaches.push(Breach {
                    number: t.number,
                    title: t.title.clone(),
                    priority: t.priority.clone(),
                    clock: name.into(),
                    due_at: clock.due_at.map(fmt),
                    over_minutes: (-clock.remaining).whole_minutes(),
                });
            } else if clock.met == Some(true) {
                *met += 1;
            }
        }
    }
    let sum = |f: fn(&SlaPriority) -> i64| per.iter().map(f).sum::<i64>();
    let (rm, rb) = (sum(|p| p.response_met), sum(|p| p.response_breached));
    let (sm, sb) = (sum(|p| p.resolution_met), sum(|p| p.resolution_breached));
    breaches.sort_by(|a, b| (a.number, &a.clock).cmp(&(b.number, &b.clock)));
    SlaSection {
        per_priority: per,
        response_compliance: rate(rm, rm + rb).map(round4),
        resolution_compliance: rate(sm, sm + sb).map(round4),
        breaches,
    }
}

fn round4(x: f64) -> f64 {
    (x * 10000.0).round() / 10000.0
}

fn times(mut minutes: Vec<f64>) -> Times {
    use crate::desk::stats::percentile;
    Times {
        count: minutes.len(),
        p50_minutes: percentile(&mut minutes, 50.0).map(round2),
        p90_minutes: percentile(&mut minutes, 90.0).map(round2),
    }
}

fn minutes_between(a: OffsetDateTime, b: OffsetDateTime) -> f64 {
    (b - a).as_seconds_f64() / 60.0
}

fn incidents(r: &Records) -> Incidents {
    let mut by_kind = BTreeMap::new();
    let mut by_channel = BTreeMap::new();
    let mut by_priority = BTreeMap::new();
    let mut series: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let span = r.to - r.from;
    let (mut done, mut first_time) = (0, 0);
    for t in &r.tickets {
        *by_kind.entry(t.kind.clone()).or_insert(0) += 1;
        *by_channel.entry(t.channel.clone()).or_insert(0) += 1;
        *by_priority.entry(t.priority.clone()).or_insert(0) += 1;
        series.entry(period_key(span, t.created_at)).or_default().0 += 1;
        if let Some(at) = t.resolved_at
            && at < r.to
        {
            series.entry(period_key(span, at)).or_default().1 += 1;
        }
        if t.state == "resolved" || t.state == "closed" {
            done += 1;
            if t.reopen_count == 0 {
                first_time += 1;
            }
        }
    }
    let response = times(
        r.tickets
            .iter()
            .filter_map(|t| t.responded_at.map(|at| minutes_between(t.created_at, at)))
            .collect(),
    );
    let resolution = times(
        r.tickets
            .iter()
            .filter_map(|t| t.resolved_at.map(|at| minutes_between(t.created_at, at)))
            .collect(),
    );
    let major = r
        .tickets
        .iter()
        .filter(|t| t.priority == "P1")
        .map(|t| MajorIncident {
            number: t.number,
            title: t.title.clone(),
            created_at: fmt(t.created_at),
            resolved_at: t.resolved_at.map(fmt),
            resolution: t.resolution.clone(),
        })
        .collect();
    Incidents {
        total: r.tickets.len() as i64,
        by_kind,
        by_channel,
        by_priority,
        response,
        resolution,
        first_time_fix_rate: rate(first_time, done).map(round4),
        reopen_rate: rate(done - first_time, done).map(round4),
        major,
        series: series
            .into_iter()
            .map(|(period, (created, resolved))| PeriodCount {
                period,
                created,
                resolved,
            })
            .collect(),
    }
}

fn workload(r: &Records) -> Vec<Workload> {
    let mut per: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for t in &r.tickets {
        if let Some(a) = &t.assignee {
            let e = per.entry(a).or_default();
            e.0 += 1;
            if t.resolved_at.is_some() {
                e.1 += 1;
            }
        }
    }
    let mut out: Vec<Workload> = per
        .into_iter()
        .map(|(name, (assigned, resolved))| Workload {
            name: name.into(),
            assigned,
            resolved,
            handling_rate: rate(resolved, assigned).map(round4),
        })
        .collect();
    out.sort_by(|a, b| b.assigned.cmp(&a.assigned).then(a.name.cmp(&b.name)));
    out
}

fn satisfaction(r: &Records) -> Satisfaction {
    let mut distribution: BTreeMap<String, i64> = (1..=5).map(|i| (i.to_string(), 0)).collect();
    let (mut rated, mut sum, mut unrated) = (0, 0, 0);
    let mut trend: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let span = r.to - r.from;
    for t in &r.tickets {
        match t.rating {
            Some(v @ 1..=5) => {
                *distribution.entry(v.to_string()).or_insert(0) += 1;
                rated += 1;
                sum += v;
                let e = trend.entry(period_key(span, t.created_at)).or_default();
                e.0 += 1;
                e.1 += v;
            }
            _ if t.state == "closed" => unrated += 1,
            _ => {}
        }
    }
    Satisfaction {
        distribution,
        rated,
        average: rate(sum, rated).map(round2),
        unrated,
        trend: trend
            .into_iter()
            .map(|(period, (n, s))| PeriodAverage {
                period,
                rated: n,
                average: rate(s, n).map(round2),
            })
            .collect(),
        complaints: r
            .tickets
            .iter()
            .filter(|t| t.kind == "complaint")
            .map(|t| Complaint {
                number: t.number,
                title: t.title.clone(),
                state: t.state.clone(),
                resolution: t.resolution.clone(),
            })
            .collect(),
    }
}

fn resources(r: &Records) -> Resources {
    #[derive(Default)]
    struct Acc {
        cpu_sum: f64,
        cpu_n: i64,
        cpu_peak: Option<f64>,
        mem_sum: f64,
        mem_n: i64,
        mem_peak: Option<f64>,
        vms_peak: i64,
    }
    let max = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let mut per: BTreeMap<&str, Acc> = BTreeMap::new();
    let mut memory: BTreeMap<&str, Vec<Point>> = BTreeMap::new();
    for h in &r.node_hours {
        if h.mem_n > 0 {
            memory.entry(&h.node).or_default().push(Point {
                at: h.hour,
                value: h.mem_sum / h.mem_n as f64,
            });
        }
        let a = per.entry(&h.node).or_default();
        a.cpu_sum += h.cpu_sum;
        a.cpu_n += h.cpu_n;
        a.cpu_peak = max(a.cpu_peak, h.cpu_max);
        a.mem_sum += h.mem_sum;
        a.mem_n += h.mem_n;
        a.mem_peak = max(a.mem_peak, h.mem_max);
        a.vms_peak = a.vms_peak.max(h.vms_max);
    }
    let span = r.to - r.from;
    let mut trend: BTreeMap<String, i64> = BTreeMap::new();
    for c in &r.cluster_hours {
        if let Ok(t) = OffsetDateTime::from_unix_timestamp(c.hour) {
            let e = trend.entry(period_key(span, t)).or_insert(0);
            *e = (*e).max(c.vms_peak);
        }
    }
    let mut courses: BTreeMap<&str, i64> = BTreeMap::new();
    let mut minutes = 0;
    for u in &r.vm_usage {
        minutes += u.minutes;
        if let Some(c) = &u.course {
            *courses.entry(c).or_insert(0) += u.minutes;
        }
    }
    Resources {
        nodes: per
            .into_iter()
            .map(|(node, a)| NodeUse {
                node: node.into(),
                cpu_average: (a.cpu_n > 0).then(|| round2(a.cpu_sum / a.cpu_n as f64)),
                cpu_peak: a.cpu_peak.map(round2),
                mem_average_percent: (a.mem_n > 0).then(|| round2(a.mem_sum / a.mem_n as f64)),
                mem_peak_percent: a.mem_peak.map(round2),
                vms_peak: a.vms_peak,
                memory_forecast: days_until_full(
                    memory.get(node).map_or(&[][..], Vec::as_slice),
                    100.0,
                    r.to.unix_timestamp(),
                    86_400,
                ),
            })
            .collect(),
        peak_concurrent_vms: r
            .cluster_hours
            .iter()
            .map(|c| c.vms_peak)
            .max()
            .unwrap_or(0),
        peak_trend: trend
            .into_iter()
            .map(|(period, peak_vms)| PeriodPeak { period, peak_vms })
            .collect(),
        vm_hours: round2(minutes as f64 / 60.0),
        hours_per_course: courses
            .into_iter()
            .map(|(course, m)| CourseHours {
                course: course.into(),
                hours: round2(m as f64 / 60.0),
            })
            .collect(),
        template_store_bytes: r.inventory.template_store_bytes,
        templates: r.inventory.templates,
    }
}

fn service_levels(r: &Records) -> ServiceLevels {
    // Each node's down intervals clipped to the range: a node_down opens one
    // (or continues one opened before `from`), node_up closes it; one still
    // open is counted to `to`.
    let mut down_since: BTreeMap<&str, Option<OffsetDateTime>> = BTreeMap::new();
    let mut downtime: BTreeMap<&str, (i64, Duration)> = BTreeMap::new();
    let mut failures: BTreeMap<&str, i64> = BTreeMap::new();
    let mut start_failures = 0;
    for e in &r.events {
        let Some(node) = e.node.as_deref() else {
            continue;
        };
        match e.kind.as_str() {
            "node_down" => {
                let open = down_since.entry(node).or_insert(None);
                if open.is_none() {
                    *open = Some(e.at.max(r.from));
                    if e.at >= r.from {
                        downtime.entry(node).or_default().0 += 1;
                    }
                }
                downtime.entry(node).or_default();
            }
            "node_up" => {
                if let Some(Some(since)) = down_since.insert(node, None) {
                    let end = e.at.clamp(r.from, r.to);
                    downtime.entry(node).or_default().1 += end - since.min(end);
                }
                downtime.entry(node).or_default();
            }
            "vm_start_failed" if e.at >= r.from => {
                *failures.entry(node).or_insert(0) += 1;
                start_failures += 1;
            }
            _ => {}
        }
    }
    for (node, since) in down_since {
        if let Some(since) = since {
            downtime.entry(node).or_default().1 += r.to - since.min(r.to);
        }
    }
    // Nodes that reported samples but never went down are fully available.
    for s in &r.node_hours {
        downtime.entry(&s.node).or_default();
    }
    for node in failures.keys() {
        downtime.entry(node).or_default();
    }
    let span = (r.to - r.from).as_seconds_f64();
    let share_up = |down: Duration| {
        if span > 0.0 {
            1.0 - down.as_seconds_f64() / span
        } else {
            1.0
        }
    };
    // The mean over the unrounded shares (rounding first would bias it).
    let node_availability = (!downtime.is_empty()).then(|| {
        round4(downtime.values().map(|(_, d)| share_up(*d)).sum::<f64>() / downtime.len() as f64)
    });
    let nodes: Vec<NodeAvailability> = downtime
        .into_iter()
        .map(|(node, (events, down))| NodeAvailability {
            node: node.into(),
            down_events: events,
            downtime_minutes: round2(down.as_seconds_f64() / 60.0),
            availability: round4(share_up(down)),
            start_failures: failures.get(node).copied().unwrap_or(0),
        })
        .collect();
    let mut class_provisioning = crate::slo::provisioning::figures(&r.class_prestarts);
    class_provisioning.per_session.clear();
    ServiceLevels {
        nodes,
        node_availability,
        vm_start_failures: start_failures,
        class_provisioning,
    }
}

/// One CSV row: section, figure, key (a priority, node, period…; may be
/// empty), value.
pub type CsvRow = (&'static str, String, String, String);

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// A forecast as one CSV value: days, or `unknown` / `not_growing` / `full`.
pub fn forecast_text(f: Forecast) -> String {
    match f {
        Forecast::Unknown => "unknown".into(),
        Forecast::NotGrowing => "not_growing".into(),
        Forecast::Full => "full".into(),
        Forecast::InDays { days } => format!("{:.1}", days),
    }
}

impl Figures {
    /// Every figure as `(section, figure, key, value)` rows.
    pub fn csv_rows(&self) -> Vec<CsvRow> {
        let mut rows: Vec<CsvRow> = Vec::new();
        let mut add = |s: &'static str, f: &str, k: &str, v: String| {
            rows.push((s, f.to_owned(), k.to_owned(), v));
        };
        let s = &self.summary;
        add("summary", "from", "", s.from.clone());
        add("summary", "to", "", s.to.clone());
        add("summary", "tickets", "", s.tickets.to_string());
        add("summary", "incidents", "", s.incidents.to_string());
        add("summary", "complaints", "", s.complaints.to_string());
        add(
            "summary",
            "response_compliance",
            "",
            opt(s.response_compliance),
        );
        add(
            "summary",
            "resolution_compliance",
            "",
            opt(s.resolution_compliance),
        );
        add(
            "summary",
            "satisfaction_average",
            "",
            opt(s.satisfaction_average),
        );
        add("summary", "node_availability", "", opt(s.node_availability));
        add("summary", "vm_hours", "", s.vm_hours.to_string());
        add(
            "summary",
            "peak_concurrent_vms",
            "",
            s.peak_concurrent_vms.to_string(),
        );
        let i = &s.inventory;
        for (f, v) in [
            ("nodes", i.nodes),
            ("courses", i.courses),
            ("students", i.students),
            ("vms", i.vms),
            ("templates", i.templates),
            ("template_store_bytes", i.template_store_bytes),
        ] {
            add("summary", f, "", v.to_string());
        }
        for p in &self.sla.per_priority {
            let k = p.priority.as_str();
            add(
                "sla",
                "response_target_minutes",
                k,
                p.response_target_minutes.to_string(),
            );
            add(
                "sla",
                "resolution_target_minutes",
                k,
                p.resolution_target_minutes.to_string(),
            );
            add("sla", "tickets", k, p.tickets.to_string());
            add("sla", "response_met", k, p.response_met.to_string());
            add(
                "sla",
                "response_breached",
                k,
                p.response_breached.to_string(),
            );
            add("sla", "resolution_met", k, p.resolution_met.to_string());
            add(
                "sla",
                "resolution_breached",
                k,
                p.resolution_breached.to_string(),
            );
        }
        add(
            "sla",
            "response_compliance",
            "",
            opt(self.sla.response_compliance),
        );
        add(
            "sla",
            "resolution_compliance",
            "",
            opt(self.sla.resolution_compliance),
        );
        for b in &self.sla.breaches {
            let k = format!("#{} {}", b.number, b.clock);
            add("sla", "breach_over_minutes", &k, b.over_minutes.to_string());
        }
        let n = &self.incidents;
        add("incidents", "total", "", n.total.to_string());
        for (f, m) in [
            ("by_kind", &n.by_kind),
            ("by_channel", &n.by_channel),
            ("by_priority", &n.by_priority),
        ] {
            for (k, v) in m {
                add("incidents", f, k, v.to_string());
            }
        }
        for (f, t) in [("response", &n.response), ("resolution", &n.resolution)] {
            add("incidents", &format!("{f}_count"), "", t.count.to_string());
            add(
                "incidents",
                &format!("{f}_p50_minutes"),
                "",
                opt(t.p50_minutes),
            );
            add(
                "incidents",
                &format!("{f}_p90_minutes"),
                "",
                opt(t.p90_minutes),
            );
        }
        add(
            "incidents",
            "first_time_fix_rate",
            "",
            opt(n.first_time_fix_rate),
        );
        add("incidents", "reopen_rate", "", opt(n.reopen_rate));
        for m in &n.major {
            add(
                "incidents",
                "major",
                &format!("#{}", m.number),
                m.title.clone(),
            );
        }
        for p in &n.series {
            add("incidents", "created", &p.period, p.created.to_string());
            add("incidents", "resolved", &p.period, p.resolved.to_string());
        }
        for w in &self.workload {
            add("workload", "assigned", &w.name, w.assigned.to_string());
            add("workload", "resolved", &w.name, w.resolved.to_string());
            add("workload", "handling_rate", &w.name, opt(w.handling_rate));
        }
        let sat = &self.satisfaction;
        for (k, v) in &sat.distribution {
            add("satisfaction", "rating", k, v.to_string());
        }
        add("satisfaction", "rated", "", sat.rated.to_string());
        add("satisfaction", "average", "", opt(sat.average));
        add("satisfaction", "unrated", "", sat.unrated.to_string());
        for p in &sat.trend {
            add("satisfaction", "average", &p.period, opt(p.average));
        }
        for c in &sat.complaints {
            add(
                "satisfaction",
                "complaint",
                &format!("#{}", c.number),
                c.state.clone(),
            );
        }
        let res = &self.resources;
        for u in &res.nodes {
            add("resources", "cpu_average", &u.node, opt(u.cpu_average));
            add("resources", "cpu_peak", &u.node, opt(u.cpu_peak));
            add(
                "resources",
                "mem_average_percent",
                &u.node,
                opt(u.mem_average_percent),
            );
            add(
                "resources",
                "mem_peak_percent",
                &u.node,
                opt(u.mem_peak_percent),
            );
            add("resources", "vms_peak", &u.node, u.vms_peak.to_string());
            add(
                "resources",
                "memory_full_in_days",
                &u.node,
                forecast_text(u.memory_forecast),
            );
        }
        add(
            "resources",
            "peak_concurrent_vms",
            "",
            res.peak_concurrent_vms.to_string(),
        );
        for p in &res.peak_trend {
            add("resources", "peak_vms", &p.period, p.peak_vms.to_string());
        }
        add("resources", "vm_hours", "", res.vm_hours.to_string());
        for c in &res.hours_per_course {
            add("resources", "course_hours", &c.course, c.hours.to_string());
        }
        add(
            "resources",
            "template_store_bytes",
            "",
            res.template_store_bytes.to_string(),
        );
        add("resources", "templates", "", res.templates.to_string());
        let sl = &self.service_levels;
        for n in &sl.nodes {
            add(
                "service_levels",
                "down_events",
                &n.node,
                n.down_events.to_string(),
            );
            add(
                "service_levels",
                "downtime_minutes",
                &n.node,
                n.downtime_minutes.to_string(),
            );
            add(
                "service_levels",
                "availability",
                &n.node,
                n.availability.to_string(),
            );
            add(
                "service_levels",
                "start_failures",
                &n.node,
                n.start_failures.to_string(),
            );
        }
        add(
            "service_levels",
            "node_availability",
            "",
            opt(sl.node_availability),
        );
        add(
            "service_levels",
            "vm_start_failures",
            "",
            sl.vm_start_failures.to_string(),
        );
        let cp = &sl.class_provisioning;
        for (figure, value) in [
            ("class_sessions_prestarted", cp.sessions.to_string()),
            ("class_sessions_complete", cp.complete.to_string()),
            (
                "class_sessions_ready_by_start",
                cp.ready_by_start.to_string(),
            ),
            ("class_provisioning_p50_seconds", opt(cp.p50_seconds)),
            ("class_provisioning_p95_seconds", opt(cp.p95_seconds)),
            ("class_provisioning_max_seconds", opt(cp.max_seconds)),
        ] {
            add("service_levels", figure, "", value);
        }
        rows
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! One hand-made week: every expected number below is worked out by
    //! hand in the comments, not by running the code.
    use super::*;
    use crate::desk::sla::Target;
    use time::macros::datetime;

    /// Targets counted around the clock, so the SLA maths is plain minutes.
    pub(crate) fn policy() -> Policy {
        let t = |response_minutes, resolution_minutes| Target {
            response_minutes,
            resolution_minutes,
            around_the_clock: true,
        };
        Policy {
            p1: t(15, 120),
            p2: t(60, 480),
            p3: t(240, 1440),
            p4: t(480, 2400),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ticket(
        number: i64,
        kind: &str,
        priority: &str,
        channel: &str,
        state: &str,
        created_at: OffsetDateTime,
        responded_at: Option<OffsetDateTime>,
        resolved_at: Option<OffsetDateTime>,
        closed_at: Option<OffsetDateTime>,
        assignee: Option<&str>,
        rating: Option<i64>,
        reopen_count: i64,
    ) -> TicketRow {
        TicketRow {
            number,
            kind: kind.into(),
            title: format!("ticket {number}"),
            priority: priority.into(),
            channel: channel.into(),
            state: state.into(),
            created_at,
            responded_at,
            resolved_at,
            closed_at,
            assignee: assignee.map(Into::into),
            rating,
            resolution: resolved_at.map(|_| format!("fixed {number}")),
            reopen_count,
        }
    }

    fn minute(
        node: &str,
        at: OffsetDateTime,
        cpu: Option<f64>,
        used: i64,
        total: i64,
        vms: i64,
    ) -> NodeMinute {
        NodeMinute {
            node: node.into(),
            at: at.unix_timestamp(),
            cpu_percent: cpu,
            mem_used_mib: used,
            mem_total_mib: total,
            vms_running: vms,
        }
    }

    fn event(at: OffsetDateTime, kind: &str, node: &str) -> EventRow {
        EventRow {
            at,
            kind: kind.into(),
            node: Some(node.into()),
        }
    }

    /// The week of Monday 2026-03-02 (10 080 minutes).
    pub(crate) fn week() -> Records {
        let t0 = datetime!(2026-03-02 10:00 UTC);
        let (node_hours, cluster_hours) = aggregate_minutes(&[
            minute("n1", t0, Some(20.0), 1024, 4096, 2),
            minute("n1", t0 + Duration::minutes(1), Some(40.0), 2048, 4096, 3),
            minute("n2", t0, None, 0, 0, 1),
            minute("n2", t0 + Duration::minutes(1), Some(10.0), 1024, 2048, 4),
        ]);
        Records {
            from: datetime!(2026-03-02 00:00 UTC),
            to: datetime!(2026-03-09 00:00 UTC),
            tickets: vec![
                // P1: response 10 min (target 15), resolution 60 (target 120), rated 5.
                ticket(
                    1,
                    "incident",
                    "P1",
                    "web",
                    "closed",
                    datetime!(2026-03-02 09:00 UTC),
                    Some(datetime!(2026-03-02 09:10 UTC)),
                    Some(datetime!(2026-03-02 10:00 UTC)),
                    Some(datetime!(2026-03-02 10:30 UTC)),
                    Some("Li"),
                    Some(5),
                    0,
                ),
                // P2: response 90 (target 60: 30 over), resolution 470 (target 480),
                // reopened once, closed unrated.
                ticket(
                    2,
                    "incident",
                    "P2",
                    "phone",
                    "closed",
                    datetime!(2026-03-03 09:00 UTC),
                    Some(datetime!(2026-03-03 10:30 UTC)),
                    Some(datetime!(2026-03-03 16:50 UTC)),
                    Some(datetime!(2026-03-04 09:00 UTC)),
                    Some("Li"),
                    None,
                    1,
                ),
                // P3: response 30; unresolved: at the end, 4 d 16 h = 6720 min of
                // a 1440 target: 5280 over.
                ticket(
                    3,
                    "request",
                    "P3",
                    "web",
                    "in_progress",
                    datetime!(2026-03-04 08:00 UTC),
                    Some(datetime!(2026-03-04 08:30 UTC)),
                    None,
                    None,
                    Some("Wang"),
                    None,
                    0,
                ),
                // P4 complaint: response 60, resolution 1440 (target 2400), rated 2.
                ticket(
                    4,
                    "complaint",
                    "P4",
                    "email",
                    "closed",
                    datetime!(2026-03-05 12:00 UTC),
                    Some(datetime!(2026-03-05 13:00 UTC)),
                    Some(datetime!(2026-03-06 12:00 UTC)),
                    Some(datetime!(2026-03-06 13:00 UTC)),
                    Some("Wang"),
                    Some(2),
                    0,
                ),
                // P3, never touched: 2 d 14 h = 3720 min at the end: response
                // 3480 over (240), resolution 2280 over (1440).
                ticket(
                    5,
                    "incident",
                    "P3",
                    "web",
                    "new",
                    datetime!(2026-03-06 10:00 UTC),
                    None,
                    None,
                    None,
                    None,
                    None,
                    0,
                ),
            ],
            events: vec![
                // n1 down from before the week until 01:00: 60 min inside it.
                event(datetime!(2026-03-01 22:00 UTC), "node_down", "n1"),
                event(datetime!(2026-03-01 23:00 UTC), "vm_start_failed", "n1"),
                event(datetime!(2026-03-02 01:00 UTC), "node_up", "n1"),
                event(datetime!(2026-03-03 08:00 UTC), "vm_start_failed", "n1"),
                // n2: 30 min, then down from 23:10 to the end: 50 min.
                event(datetime!(2026-03-04 12:00 UTC), "node_down", "n2"),
                event(datetime!(2026-03-04 12:30 UTC), "node_up", "n2"),
                event(datetime!(2026-03-08 23:10 UTC), "node_down", "n2"),
            ],
            node_hours,
            cluster_hours,
            vm_usage: vec![
                VmUsage {
                    course: Some("CS101".into()),
                    minutes: 90,
                },
                VmUsage {
                    course: Some("CS101".into()),
                    minutes: 30,
                },
                VmUsage {
                    course: Some("NET".into()),
                    minutes: 60,
                },
                VmUsage {
                    course: None,
                    minutes: 30,
                },
            ],
            // Two pre-started classes: one ready 90 s after its pre-start
            // (before the start), one with a failed VM (incomplete).
            class_prestarts: {
                use crate::slo::provisioning::{PrestartRow, PrestartVm};
                let at = |t: OffsetDateTime| t.unix_timestamp() * 1000;
                let start = datetime!(2026-03-03 08:00 UTC);
                let pre = start - Duration::minutes(10);
                let vm =
                    |ready: Option<OffsetDateTime>, failed: Option<OffsetDateTime>| PrestartVm {
                        ready_ms: ready.map(at),
                        failed_ms: failed.map(at),
                    };
                vec![
                    PrestartRow {
                        course_id: uuid::Uuid::from_u128(1),
                        session_start_ms: at(start),
                        prestart_ms: at(pre),
                        vms: vec![
                            vm(Some(pre + Duration::seconds(40)), None),
                            vm(Some(pre + Duration::seconds(90)), None),
                        ],
                    },
                    PrestartRow {
                        course_id: uuid::Uuid::from_u128(2),
                        session_start_ms: at(start + Duration::days(1)),
                        prestart_ms: at(pre + Duration::days(1)),
                        vms: vec![vm(None, Some(pre + Duration::days(1)))],
                    },
                ]
            },
            inventory: Inventory {
                nodes: 2,
                courses: 2,
                students: 40,
                vms: 41,
                templates: 3,
                template_store_bytes: 3 << 30,
            },
        }
    }

    fn figures() -> Figures {
        compute(
            &week(),
            &policy(),
            &Calendar::default(),
            datetime!(2026-03-10 00:00 UTC),
        )
    }

    #[test]
    fn sla_target_vs_actual() {
        let f = figures();
        let p: Vec<_> = f
            .sla
            .per_priority
            .iter()
            .map(|p| {
                (
                    p.priority.as_str(),
                    p.tickets,
                    p.response_met,
                    p.response_breached,
                    p.resolution_met,
                    p.resolution_breached,
                )
            })
            .collect();
        assert_eq!(
            p,
            [
                ("P1", 1, 1, 0, 1, 0),
                ("P2", 1, 0, 1, 1, 0),
                ("P3", 2, 1, 1, 0, 2),
                ("P4", 1, 1, 0, 1, 0)
            ]
        );
        // 3 met, 2 breached on each clock.
        assert_eq!(f.sla.response_compliance, Some(0.6));
        assert_eq!(f.sla.resolution_compliance, Some(0.6));
        let b: Vec<_> = f
            .sla
            .breaches
            .iter()
            .map(|b| (b.number, b.clock.as_str(), b.over_minutes))
            .collect();
        assert_eq!(
            b,
            [
                (2, "response", 30),
                (3, "resolution", 5280),
                (5, "resolution", 2280),
                (5, "response", 3480)
            ]
        );
    }

    #[test]
    fn incident_figures() {
        let n = figures().incidents;
        assert_eq!(n.total, 5);
        let m = |v: &[(&str, i64)]| {
            v.iter()
                .map(|(k, n)| ((*k).to_owned(), *n))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            n.by_kind,
            m(&[("complaint", 1), ("incident", 3), ("request", 1)])
        );
        assert_eq!(n.by_channel, m(&[("email", 1), ("phone", 1), ("web", 3)]));
        assert_eq!(
            n.by_priority,
            m(&[("P1", 1), ("P2", 1), ("P3", 2), ("P4", 1)])
        );
        // Responses 10, 30, 60, 90: nearest rank p50 = 2nd = 30, p90 = 4th = 90.
        assert_eq!(
            (
                n.response.count,
                n.response.p50_minutes,
                n.response.p90_minutes
            ),
            (4, Some(30.0), Some(90.0))
        );
        // Resolutions 60, 470, 1440: p50 = 2nd, p90 = 3rd.
        assert_eq!(
            (
                n.resolution.count,
                n.resolution.p50_minutes,
                n.resolution.p90_minutes
            ),
            (3, Some(470.0), Some(1440.0))
        );
        // Done: #1, #2, #4; #2 was reopened.
        assert_eq!(n.first_time_fix_rate, Some(0.6667));
        assert_eq!(n.reopen_rate, Some(0.3333));
        assert_eq!(n.major.iter().map(|m| m.number).collect::<Vec<_>>(), [1]);
        let s: Vec<_> = n
            .series
            .iter()
            .map(|p| (p.period.as_str(), p.created, p.resolved))
            .collect();
        assert_eq!(
            s,
            [
                ("2026-03-02", 1, 1),
                ("2026-03-03", 1, 1),
                ("2026-03-04", 1, 0),
                ("2026-03-05", 1, 0),
                ("2026-03-06", 1, 1)
            ]
        );
    }

    #[test]
    fn workload_and_satisfaction() {
        let f = figures();
        let w: Vec<_> = f
            .workload
            .iter()
            .map(|w| (w.name.as_str(), w.assigned, w.resolved, w.handling_rate))
            .collect();
        assert_eq!(w, [("Li", 2, 2, Some(1.0)), ("Wang", 2, 1, Some(0.5))]);
        let s = &f.satisfaction;
        let d: Vec<_> = s
            .distribution
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(d, [("1", 0), ("2", 1), ("3", 0), ("4", 0), ("5", 1)]);
        assert_eq!((s.rated, s.average, s.unrated), (2, Some(3.5), 1));
        let t: Vec<_> = s
            .trend
            .iter()
            .map(|p| (p.period.as_str(), p.average))
            .collect();
        assert_eq!(t, [("2026-03-02", Some(5.0)), ("2026-03-05", Some(2.0))]);
        assert_eq!(
            s.complaints.iter().map(|c| c.number).collect::<Vec<_>>(),
            [4]
        );
        assert_eq!(f.summary.complaints, 1);
        assert_eq!(f.summary.incidents, 3);
    }

    #[test]
    fn resources() {
        let r = figures().resources;
        let n: Vec<_> = r
            .nodes
            .iter()
            .map(|n| {
                (
                    n.node.as_str(),
                    n.cpu_average,
                    n.cpu_peak,
                    n.mem_average_percent,
                    n.mem_peak_percent,
                    n.vms_peak,
                )
            })
            .collect();
        assert_eq!(
            n,
            [
                // CPU 20, 40; memory 25 %, 50 %.
                ("n1", Some(30.0), Some(40.0), Some(37.5), Some(50.0), 3),
                // No CPU reading in the first minute, no memory total either.
                ("n2", Some(10.0), Some(10.0), Some(50.0), Some(50.0), 4),
            ]
        );
        // 2 + 1 at 10:00, 3 + 4 at 10:01.
        assert_eq!(r.peak_concurrent_vms, 7);
        assert_eq!(r.peak_trend.len(), 1);
        // 90 + 30 + 60 + 30 minutes.
        assert_eq!(r.vm_hours, 3.5);
        let c: Vec<_> = r
            .hours_per_course
            .iter()
            .map(|c| (c.course.as_str(), c.hours))
            .collect();
        assert_eq!(c, [("CS101", 2.0), ("NET", 1.0)]);
        assert_eq!(r.template_store_bytes, 3 << 30);
    }

    #[test]
    fn service_levels_from_the_event_log() {
        let f = figures();
        let s = &f.service_levels;
        let n: Vec<_> = s
            .nodes
            .iter()
            .map(|n| {
                (
                    n.node.as_str(),
                    n.down_events,
                    n.downtime_minutes,
                    n.availability,
                    n.start_failures,
                )
            })
            .collect();
        // 1 - 60/10080 = 0.99405; 1 - 80/10080 = 0.99206.
        assert_eq!(n, [("n1", 0, 60.0, 0.9940, 1), ("n2", 2, 80.0, 0.9921, 0)]);
        // Mean of the unrounded shares: 1 - 140/20160 = 0.993056.
        assert_eq!(s.node_availability, Some(0.9931));
        assert_eq!(s.vm_start_failures, 1);
        assert_eq!(f.summary.node_availability, Some(0.9931));
        let cp = &s.class_provisioning;
        assert_eq!((cp.sessions, cp.complete, cp.ready_by_start), (2, 1, 1));
        assert_eq!(
            (cp.p50_seconds, cp.p95_seconds, cp.max_seconds),
            (Some(90.0), Some(90.0), Some(90.0))
        );
        // The report keeps the summary only.
        assert!(cp.per_session.is_empty());
    }

    #[test]
    fn csv_has_every_figure() {
        let f = figures();
        let rows = f.csv_rows();
        let find = |s: &str, fig: &str, k: &str| {
            rows.iter()
                .find(|r| r.0 == s && r.1 == fig && r.2 == k)
                .map(|r| r.3.clone())
        };
        assert_eq!(
            find("sla", "response_compliance", "").as_deref(),
            Some("0.6")
        );
        assert_eq!(find("incidents", "by_priority", "P3").as_deref(), Some("2"));
        assert_eq!(
            find("resources", "course_hours", "CS101").as_deref(),
            Some("2")
        );
        assert_eq!(
            find("service_levels", "availability", "n2").as_deref(),
            Some("0.9921")
        );
        assert_eq!(
            find("service_levels", "class_provisioning_p95_seconds", "").as_deref(),
            Some("90")
        );
        assert_eq!(
            find("service_levels", "class_sessions_ready_by_start", "").as_deref(),
            Some("1")
        );
        assert_eq!(find("satisfaction", "average", "").as_deref(), Some("3.5"));
        assert_eq!(
            find("workload", "handling_rate", "Wang").as_deref(),
            Some("0.5")
        );
    }

    #[test]
    fn an_empty_range_has_no_rates() {
        let mut r = week();
        r.tickets.clear();
        r.events.clear();
        r.node_hours.clear();
        r.cluster_hours.clear();
        r.vm_usage.clear();
        let f = compute(&r, &policy(), &Calendar::default(), r.to);
        assert_eq!(f.sla.response_compliance, None);
        assert_eq!(f.incidents.first_time_fix_rate, None);
        assert_eq!(f.satisfaction.average, None);
        assert_eq!(f.service_levels.node_availability, None);
        assert_eq!(f.resources.peak_concurrent_vms, 0);
    }

    #[test]
    fn minutes_group_into_hours() {
        let t0 = datetime!(2026-03-02 10:59 UTC);
        let (nodes, cluster) = aggregate_minutes(&[
            minute("n1", t0, Some(20.0), 1024, 4096, 2),
            minute("n1", t0 + Duration::minutes(1), Some(40.0), 2048, 4096, 3),
            minute("n2", t0, None, 0, 0, 5),
            minute("n2", t0 + Duration::minutes(1), Some(10.0), 1024, 2048, 1),
        ]);
        // 10:59 and 11:00 fall in two hours.
        assert_eq!(nodes.len(), 4);
        assert_eq!(
            (
                nodes[0].cpu_sum,
                nodes[0].cpu_n,
                nodes[0].mem_max,
                nodes[0].vms_max
            ),
            (20.0, 1, Some(25.0), 2)
        );
        assert_eq!(
            (nodes[2].cpu_n, nodes[2].mem_n, nodes[2].vms_max),
            (0, 0, 5)
        );
        // 2 + 5 at 10:59; 3 + 1 at 11:00.
        let peaks: Vec<_> = cluster.iter().map(|c| c.vms_peak).collect();
        assert_eq!(peaks, [7, 4]);
    }

    #[test]
    fn memory_forecast_from_the_hourly_trend() {
        let mut r = week();
        // n3: memory at 50 % on Monday 00:00, one point more per day.
        r.node_hours = (0..7)
            .map(|d| NodeHour {
                node: "n3".into(),
                hour: (r.from + Duration::days(d)).unix_timestamp(),
                cpu_sum: 0.0,
                cpu_n: 0,
                cpu_max: None,
                mem_sum: 50.0 + d as f64,
                mem_n: 1,
                mem_max: Some(50.0 + d as f64),
                vms_max: 0,
            })
            .collect();
        let f = compute(&r, &policy(), &Calendar::default(), r.to);
        // 57 % at the range's end (day 7), 43 points left at one a day.
        let n3 = f
            .resources
            .nodes
            .iter()
            .find(|n| n.node == "n3")
            .expect("n3");
        match n3.memory_forecast {
            Forecast::InDays { days } => assert!((days - 43.0).abs() < 1e-9, "{days}"),
            other => panic!("{other:?}"),
        }
        // Two minutes of one hour: too little to go on.
        let f = figures();
        assert_eq!(f.resources.nodes[0].memory_forecast, Forecast::Unknown);
    }

    #[test]
    fn trend_buckets_follow_the_range() {
        let t = datetime!(2026-03-04 12:00 UTC);
        assert_eq!(period_key(Duration::days(7), t), "2026-03-04");
        assert_eq!(period_key(Duration::days(91), t), "2026-W10");
        assert_eq!(period_key(Duration::days(365), t), "2026-03");
    }
}
