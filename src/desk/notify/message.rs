//! The texts of the desk's notifications, in zh-CN and English.
//!
//! [`render`] turns an [`Event`] into a [`Message`]: a one-line subject
//! (e-mail subject, chat title), a plain-text body and a markdown body (for
//! chat-bot webhooks). User-written parts are treated as data: control
//! characters never reach the subject, and markdown metacharacters in them
//! are escaped so a ticket title cannot turn into a link or a heading.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::desk::sla::Clock;

/// The recipient's language.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

impl Lang {
    /// From a language tag as the UI stores it (`zh-CN`, `zh`, `en`,
    /// `en-US`...): Chinese for any `zh` tag, English otherwise.
    pub fn from_tag(tag: &str) -> Lang {
        let t = tag.trim().to_ascii_lowercase();
        if t == "zh" || t.starts_with("zh-") || t.starts_with("zh_") {
            Lang::ZhCn
        } else {
            Lang::En
        }
    }
    pub fn tag(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }
}

/// The ticket an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRef {
    /// The number shown to people (`#42`).
    pub number: String,
    pub title: String,
    /// Absolute link to the ticket page, when the server knows its public URL.
    pub url: Option<String>,
}

/// The alert an [`Event::Alert`] is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRef {
    pub id: String,
    /// The rule's identifier (`node_memory`, `slo_burn`...).
    pub rule: String,
    /// What it is about, as people name it (a node's name, `site`...).
    pub subject: String,
    /// Absolute link to the alerts page, when the server knows its public URL.
    pub url: Option<String>,
}

/// The course an [`Event::TermEnding`] is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourseRef {
    pub id: String,
    /// The course's code (`OS-2026`), as students know it.
    pub code: String,
    pub name: String,
    /// Absolute link to the student's courses page (their VMs' cards, with
    /// *Export*), when the server knows its public URL.
    pub url: Option<String>,
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertChange {
    Fired,
    Escalated,
    Resolved,
}

/// What can be notified (the per-user, per-event preference key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Assigned,
    Commented,
    Escalated,
    Resolved,
    Callback,
    /// An alert of the lab's monitoring fired, escalated or resolved (staff
    /// and admins only).
    Alert,
    /// A course of the student's ends soon: until when they can download
    /// their work (students only).
    Term,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Assigned,
        EventKind::Commented,
        EventKind::Escalated,
        EventKind::Resolved,
        EventKind::Callback,
        EventKind::Alert,
        EventKind::Term,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Assigned => "assigned",
            EventKind::Commented => "commented",
            EventKind::Escalated => "escalated",
            EventKind::Resolved => "resolved",
            EventKind::Callback => "callback",
            EventKind::Alert => "alert",
            EventKind::Term => "term",
        }
    }
}

/// A desk event, with what its message needs. Times are shown in the offset
/// they carry: pass them converted to the lab's calendar offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The ticket was assigned to the recipient (by `by`).
    Assigned { ticket: TicketRef, by: String },
    /// Someone commented on a ticket the recipient follows.
    Commented {
        ticket: TicketRef,
        author: String,
        excerpt: String,
    },
    /// An SLA escalation step (see `desk::sla::Step`).
    Escalated {
        ticket: TicketRef,
        clock: Clock,
        percent: u8,
        breach: bool,
        #[serde(with = "time::serde::rfc3339::option")]
        due_at: Option<OffsetDateTime>,
    },
    /// The recipient's ticket was resolved: confirm, reopen or rate.
    Resolved {
        ticket: TicketRef,
        by: String,
        resolution: String,
    },
    /// Staff recorded a callback (回访) on the ticket.
    Callback {
        ticket: TicketRef,
        by: String,
        outcome: String,
    },
    /// An alert fired, escalated (to `level`) or resolved (`level`: the
    /// level it had).
    Alert {
        alert: AlertRef,
        change: AlertChange,
        /// `info`, `warning` or `critical`.
        level: String,
        /// The value that decided it, formatted (`93.5`), when known.
        value: Option<String>,
        /// Which check gave the level (`threshold`, `deviation`, `forecast`).
        cause: Option<String>,
    },
    /// A course of the recipient's ends at `ends_at`: they can download
    /// their work until `download_until` (then it is erased); `None` while
    /// an admin holds it against erasure.
    TermEnding {
        course: CourseRef,
        #[serde(with = "time::serde::rfc3339")]
        ends_at: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339::option")]
        download_until: Option<OffsetDateTime>,
    },
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Assigned { .. } => EventKind::Assigned,
            Event::Commented { .. } => EventKind::Commented,
            Event::Escalated { .. } => EventKind::Escalated,
            Event::Resolved { .. } => EventKind::Resolved,
            Event::Callback { .. } => EventKind::Callback,
            Event::Alert { .. } => EventKind::Alert,
            Event::TermEnding { .. } => EventKind::Term,
        }
    }
    /// The ticket it is about (`None` for an alert or a term's end).
    pub fn ticket(&self) -> Option<&TicketRef> {
        match self {
            Event::Assigned { ticket, .. }
            | Event::Commented { ticket, .. }
            | Event::Escalated { ticket, .. }
            | Event::Resolved { ticket, .. }
            | Event::Callback { ticket, .. } => Some(ticket),
            Event::Alert { .. } | Event::TermEnding { .. } => None,
        }
    }
}

/// A rendered notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// One line, no control characters.
    pub subject: String,
    pub text: String,
    pub markdown: String,
}

/// Longest title shown in a subject, in characters (the body has it whole).
const SUBJECT_TITLE_CHARS: usize = 80;

/// One line: control characters (CR, LF, TAB...) become spaces, runs of
/// spaces collapse, and it is cut to `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<&str> = flat.split_whitespace().collect();
    let joined = words.join(" ");
    if joined.chars().count() > max {
        let cut: String = joined.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

/// Escapes markdown metacharacters so user text renders as itself.
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '<'
                | '>'
                | '('
                | ')'
                | '#'
                | '+'
                | '-'
                | '.'
                | '!'
                | '|'
                | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// User text as a markdown block quote (each line escaped and quoted).
fn quote_markdown(s: &str) -> String {
    s.lines()
        .map(|l| format!("> {}", escape_markdown(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn format_time(t: OffsetDateTime) -> String {
    let o = t.offset().whole_minutes();
    let sign = if o < 0 { '-' } else { '+' };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} (UTC{sign}{:02}:{:02})",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        o.abs() / 60,
        o.abs() % 60
    )
}

/// The parts of a message before assembly: a headline (subject without the
/// prefix), the lead sentence, an optional quoted user text, and closing lines.
struct Parts {
    headline: String,
    lead: String,
    /// (lead for markdown, with user text escaped)
    lead_md: String,
    quote: Option<String>,
    closing: Vec<String>,
}

/// Renders `event` for a recipient reading `lang`.
pub fn render(event: &Event, lang: Lang) -> Message {
    let zh = lang == Lang::ZhCn;
    if let Event::TermEnding { .. } = event {
        return assemble(term_parts(event, zh), term_link(event, zh), zh);
    }
    let Some(t) = event.ticket() else {
        return assemble(alert_parts(event, zh), alert_link(event, zh), zh);
    };
    let title_line = one_line(&t.title, SUBJECT_TITLE_CHARS);
    let num = one_line(&t.number, 32);
    let title = one_line(&t.title, 1000);
    let md = |s: &str| escape_markdown(&one_line(s, 1000));
    let clock_name = |c: Clock| match (c, zh) {
        (Clock::Response, true) => "响应",
        (Clock::Resolution, true) => "解决",
        (Clock::Response, false) => "response",
        (Clock::Resolution, false) => "resolution",
    };
    let p = match event {
        Event::Assigned { by, .. } => Parts {
            headline: if zh {
                format!("工单 #{num} 已分派给你：{title_line}")
            } else {
                format!("Ticket #{num} assigned to you: {title_line}")
            },
            lead: if zh {
                format!("{} 把工单 #{num}「{title}」分派给了你。", one_line(by, 200))
            } else {
                format!(
                    "{} assigned ticket #{num} “{title}” to you.",
                    one_line(by, 200)
                )
            },
            lead_md: if zh {
                format!(
                    "{} 把工单 **#{num}**「{}」分派给了你。",
                    md(by),
                    md(&t.title)
                )
            } else {
                format!(
                    "{} assigned ticket **#{num}** “{}” to you.",
                    md(by),
                    md(&t.title)
                )
            },
            quote: None,
            closing: vec![],
        },
        Event::Commented {
            author, excerpt, ..
        } => Parts {
            headline: if zh {
                format!("工单 #{num} 有新回复：{title_line}")
            } else {
                format!("New comment on ticket #{num}: {title_line}")
            },
            lead: if zh {
                format!("{} 回复了工单 #{num}「{title}」：", one_line(author, 200))
            } else {
                format!(
                    "{} commented on ticket #{num} “{title}”:",
                    one_line(author, 200)
                )
            },
            lead_md: if zh {
                format!("{} 回复了工单 **#{num}**「{}」：", md(author), md(&t.title))
            } else {
                format!(
                    "{} commented on ticket **#{num}** “{}”:",
                    md(author),
                    md(&t.title)
                )
            },
            quote: Some(excerpt.clone()),
            closing: vec![],
        },
        Event::Escalated {
            clock,
            percent,
            breach,
            due_at,
            ..
        } => {
            let c = clock_name(*clock);
            let headline = match (breach, zh) {
                (true, true) => format!("工单 #{num} 已超出{c}时限：{title_line}"),
                (true, false) => format!("Ticket #{num} missed its {c} target: {title_line}"),
                (false, true) => format!("工单 #{num} 的{c}时限已用 {percent}%：{title_line}"),
                (false, false) => {
                    format!("Ticket #{num} has used {percent}% of its {c} time: {title_line}")
                }
            };
            let (lead, lead_md) = match (breach, zh) {
                (true, true) => (
                    format!("工单 #{num}「{title}」未能在{c}时限内完成，已记录为超时。"),
                    format!(
                        "工单 **#{num}**「{}」未能在{c}时限内完成，已记录为超时。",
                        md(&t.title)
                    ),
                ),
                (true, false) => (
                    format!(
                        "Ticket #{num} “{title}” missed its {c} target; the breach is recorded."
                    ),
                    format!(
                        "Ticket **#{num}** “{}” missed its {c} target; the breach is recorded.",
                        md(&t.title)
                    ),
                ),
                (false, true) => (
                    format!("工单 #{num}「{title}」的{c}时限已用去 {percent}%，请尽快处理。"),
                    format!(
                        "工单 **#{num}**「{}」的{c}时限已用去 {percent}%，请尽快处理。",
                        md(&t.title)
                    ),
                ),
                (false, false) => (
                    format!(
                        "Ticket #{num} “{title}” has used {percent}% of its {c} time: please act on it soon."
                    ),
                    format!(
                        "Ticket **#{num}** “{}” has used {percent}% of its {c} time: please act on it soon.",
                        md(&t.title)
                    ),
                ),
            };
            let closing = due_at
                .map(|d| {
                    if zh {
                        format!("截止时间：{}", format_time(d))
                    } else {
                        format!("Due: {}", format_time(d))
                    }
                })
                .into_iter()
                .collect();
            Parts {
                headline,
                lead,
                lead_md,
                quote: None,
                closing,
            }
        }
        Event::Resolved { by, resolution, .. } => Parts {
            headline: if zh {
                format!("你的工单 #{num} 已解决：{title_line}")
            } else {
                format!("Your ticket #{num} was resolved: {title_line}")
            },
            lead: if zh {
                format!("{} 已解决你的工单 #{num}「{title}」：", one_line(by, 200))
            } else {
                format!(
                    "{} resolved your ticket #{num} “{title}”:",
                    one_line(by, 200)
                )
            },
            lead_md: if zh {
                format!("{} 已解决你的工单 **#{num}**「{}」：", md(by), md(&t.title))
            } else {
                format!(
                    "{} resolved your ticket **#{num}** “{}”:",
                    md(by),
                    md(&t.title)
                )
            },
            quote: Some(resolution.clone()),
            closing: vec![if zh {
                "请确认问题是否已解决，并为这次服务评分（1–5 分）；如果问题仍在，你可以重新打开工单。"
                    .to_string()
            } else {
                "Please confirm the fix and rate the service (1–5), or reopen the ticket if the problem is still there."
                    .to_string()
            }],
        },
        Event::Callback { by, outcome, .. } => Parts {
            headline: if zh {
                format!("工单 #{num} 的回访记录：{title_line}")
            } else {
                format!("Callback on ticket #{num}: {title_line}")
            },
            lead: if zh {
                format!("{} 回访了工单 #{num}「{title}」，结果：", one_line(by, 200))
            } else {
                format!(
                    "{} called back about ticket #{num} “{title}”. Outcome:",
                    one_line(by, 200)
                )
            },
            lead_md: if zh {
                format!(
                    "{} 回访了工单 **#{num}**「{}」，结果：",
                    md(by),
                    md(&t.title)
                )
            } else {
                format!(
                    "{} called back about ticket **#{num}** “{}”. Outcome:",
                    md(by),
                    md(&t.title)
                )
            },
            quote: Some(outcome.clone()),
            closing: vec![],
        },
        Event::Alert { .. } | Event::TermEnding { .. } => alert_parts(event, zh),
    };
    let link = t.url.as_ref().map(|u| {
        let u = one_line(u, 2048);
        if zh {
            (format!("查看工单：{u}"), format!("[查看工单]({u})"))
        } else {
            (
                format!("Open the ticket: {u}"),
                format!("[Open the ticket]({u})"),
            )
        }
    });
    assemble(p, link, zh)
}

/// A message from its parts and the (plain, markdown) link line.
fn assemble(p: Parts, link: Option<(String, String)>, zh: bool) -> Message {
    let mut text = vec![p.lead];
    let mut markdown = vec![p.lead_md];
    if let Some(q) = &p.quote {
        // Plain text keeps the user's line breaks, indented.
        text.push(
            q.lines()
                .map(|l| format!("  {}", l.trim_end()))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        markdown.push(quote_markdown(q));
    }
    for c in &p.closing {
        text.push(c.clone());
        markdown.push(escape_markdown(c));
    }
    if let Some((plain, md)) = link {
        text.push(plain);
        markdown.push(md);
    }
    let footer = if zh {
        "—— pvce 实验室服务台"
    } else {
        "— pvce lab service desk"
    };
    text.push(footer.to_string());
    Message {
        subject: format!("[pvce] {}", p.headline),
        text: text.join("\n\n") + "\n",
        markdown: markdown.join("\n\n") + "\n",
    }
}

/// The level's name in the reader's language.
fn level_name(level: &str, zh: bool) -> String {
    match (level, zh) {
        ("critical", true) => "严重".into(),
        ("warning", true) => "警告".into(),
        ("info", true) => "提示".into(),
        (l, _) => one_line(l, 32),
    }
}

/// The parts of an alert's message (rule and subject are server-made names,
/// still flattened and escaped like user text).
fn alert_parts(event: &Event, zh: bool) -> Parts {
    let Event::Alert {
        alert,
        change,
        level,
        value,
        cause,
    } = event
    else {
        return Parts {
            headline: String::new(),
            lead: String::new(),
            lead_md: String::new(),
            quote: None,
            closing: vec![],
        };
    };
    let rule = one_line(&alert.rule, 80);
    let subject = one_line(&alert.subject, 120);
    let lv = level_name(level, zh);
    let (rule_md, subject_md) = (escape_markdown(&rule), escape_markdown(&subject));
    let headline = match (change, zh) {
        (AlertChange::Fired, true) => format!("告警（{lv}）：{subject} 的 {rule}"),
        (AlertChange::Fired, false) => format!("Alert ({lv}): {rule} on {subject}"),
        (AlertChange::Escalated, true) => format!("告警升级为{lv}：{subject} 的 {rule}"),
        (AlertChange::Escalated, false) => format!("Alert escalated to {lv}: {rule} on {subject}"),
        (AlertChange::Resolved, true) => format!("告警已恢复：{subject} 的 {rule}"),
        (AlertChange::Resolved, false) => format!("Alert resolved: {rule} on {subject}"),
    };
    let what = |r: &str, s: &str| match (change, zh) {
        (AlertChange::Fired, true) => format!("{s} 的告警规则 {r} 已触发，级别：{lv}。"),
        (AlertChange::Fired, false) => format!("Alert rule {r} fired on {s} at level {lv}."),
        (AlertChange::Escalated, true) => format!("{s} 的告警 {r} 已升级为{lv}。"),
        (AlertChange::Escalated, false) => format!("Alert {r} on {s} escalated to {lv}."),
        (AlertChange::Resolved, true) => format!("{s} 的告警 {r}（{lv}）已恢复正常。"),
        (AlertChange::Resolved, false) => format!("Alert {r} on {s} ({lv}) is resolved."),
    };
    let mut closing = Vec::new();
    if let Some(v) = value {
        let v = one_line(v, 40);
        closing.push(if zh {
            format!("当前值：{v}")
        } else {
            format!("Value: {v}")
        });
    }
    if let Some(c) = cause {
        let c = one_line(c, 40);
        closing.push(if zh {
            format!("判定依据：{c}")
        } else {
            format!("Decided by: {c}")
        });
    }
    if *change != AlertChange::Resolved {
        closing.push(if zh {
            "请在告警页面确认（acknowledge）并处理；严重告警已在服务台开单。".to_string()
        } else {
            "Please acknowledge it on the alerts page; a critical alert also has a desk incident."
                .to_string()
        });
    }
    Parts {
        headline,
        lead: what(&rule, &subject),
        lead_md: what(&rule_md, &subject_md),
        quote: None,
        closing,
    }
}

fn alert_link(event: &Event, zh: bool) -> Option<(String, String)> {
    let Event::Alert { alert, .. } = event else {
        return None;
    };
    alert.url.as_ref().map(|u| {
        let u = one_line(u, 2048);
        if zh {
            (format!("查看告警：{u}"), format!("[查看告警]({u})"))
        } else {
            (
                format!("Open the alerts page: {u}"),
                format!("[Open the alerts page]({u})"),
            )
        }
    })
}

/// The parts of a term's end message: the course (the teacher's code and
/// name, flattened and escaped like user text), the end, until when the
/// work can be downloaded and how.
fn term_parts(event: &Event, zh: bool) -> Parts {
    let Event::TermEnding {
        course,
        ends_at,
        download_until,
    } = event
    else {
        return alert_parts(event, zh);
    };
    let code = one_line(&course.code, 64);
    let name = one_line(&course.name, SUBJECT_TITLE_CHARS);
    let full_name = one_line(&course.name, 1000);
    let (code_md, name_md) = (escape_markdown(&code), escape_markdown(&full_name));
    let end = format_time(*ends_at);
    let headline = match (download_until, zh) {
        (Some(u), true) => format!(
            "课程 {code}「{name}」即将结束：请在 {} 之前下载你的作业",
            format_time(*u)
        ),
        (Some(u), false) => format!(
            "Course {code} “{name}” ends soon: download your work before {}",
            format_time(*u)
        ),
        (None, true) => format!("课程 {code}「{name}」即将结束"),
        (None, false) => format!("Course {code} “{name}” ends soon"),
    };
    let what = |c: &str, n: &str| {
        if zh {
            format!("课程 {c}「{n}」将于 {end} 结束。届时课程归档：虚拟机不能再启动，个人层只读。")
        } else {
            format!(
                "The course {c} “{n}” ends at {end}. It is then archived: its VMs no longer start and their disks are read-only."
            )
        }
    };
    let mut closing = Vec::new();
    match (download_until, zh) {
        (Some(u), true) => {
            let u = format_time(*u);
            closing.push(format!("你可以下载自己的作业直到 {u}，此后它将被清除。"));
            closing.push(
                "下载方法：在“我的课程”页面，点击虚拟机卡片上的“导出”（下载虚拟机磁盘）；在“我的数据”页面可以下载 pvce 保存的关于你的全部数据。"
                    .to_string(),
            );
        }
        (Some(u), false) => {
            let u = format_time(*u);
            closing.push(format!(
                "You can download your work until {u}; after that it is erased."
            ));
            closing.push(
                "How: on the My courses page, use Export on your VM's card (the VM's disk); on My data, download everything pvce holds about you."
                    .to_string(),
            );
        }
        (None, true) => closing.push("你的作业暂时保留（管理员已冻结清除）。".to_string()),
        (None, false) => {
            closing.push("Your work is kept for now (held by an administrator).".to_string())
        }
    }
    Parts {
        headline,
        lead: what(&code, &full_name),
        lead_md: what(&code_md, &name_md),
        quote: None,
        closing,
    }
}

fn term_link(event: &Event, zh: bool) -> Option<(String, String)> {
    let Event::TermEnding { course, .. } = event else {
        return None;
    };
    course.url.as_ref().map(|u| {
        let u = one_line(u, 2048);
        if zh {
            (format!("我的课程：{u}"), format!("[我的课程]({u})"))
        } else {
            (
                format!("Open My courses: {u}"),
                format!("[Open My courses]({u})"),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(title: &str) -> TicketRef {
        TicketRef {
            number: "42".into(),
            title: title.into(),
            url: Some("https://pvce.lab.example/desk/tickets/42".into()),
        }
    }

    fn all_events(title: &str) -> Vec<Event> {
        vec![
            Event::Assigned {
                ticket: ticket(title),
                by: "王老师".into(),
            },
            Event::Commented {
                ticket: ticket(title),
                author: "Li Lei".into(),
                excerpt: "重启后\n还是黑屏".into(),
            },
            Event::Escalated {
                ticket: ticket(title),
                clock: Clock::Response,
                percent: 75,
                breach: false,
                due_at: Some(time::macros::datetime!(2026-12-01 10:15 +8)),
            },
            Event::Escalated {
                ticket: ticket(title),
                clock: Clock::Resolution,
                percent: 100,
                breach: true,
                due_at: None,
            },
            Event::Resolved {
                ticket: ticket(title),
                by: "张工".into(),
                resolution: "重建了个人层".into(),
            },
            Event::Callback {
                ticket: ticket(title),
                by: "张工".into(),
                outcome: "学生确认已恢复".into(),
            },
        ]
    }

    #[test]
    fn both_languages_for_every_event() {
        let seen: std::collections::HashSet<EventKind> = all_events("x")
            .iter()
            .chain(
                [
                    alert_event(AlertChange::Fired, "[x](http://evil)"),
                    term_event("x", true),
                ]
                .iter(),
            )
            .map(Event::kind)
            .collect();
        assert_eq!(seen.len(), EventKind::ALL.len(), "every kind has a sample");
        for e in all_events("虚拟机无法启动") {
            let zh = render(&e, Lang::ZhCn);
            let en = render(&e, Lang::En);
            assert!(zh.subject.starts_with("[pvce] "), "{zh:?}");
            assert!(zh.subject.contains("#42") && zh.subject.contains("虚拟机无法启动"));
            assert!(
                zh.text
                    .contains("查看工单：https://pvce.lab.example/desk/tickets/42")
            );
            assert!(zh.text.contains("实验室服务台"));
            assert!(en.text.contains("Open the ticket: https://"));
            // English texts carry no Chinese of their own (only the user's).
            let en_own = en.text.replace("虚拟机无法启动", "");
            assert!(!en_own.contains("工单"), "{en_own}");
            assert_ne!(zh.subject, en.subject);
            assert!(zh.markdown.contains("[查看工单](https://"));
        }
        let e = &all_events("t")[2];
        assert!(render(e, Lang::ZhCn).subject.contains("响应时限已用 75%"));
        assert!(
            render(e, Lang::ZhCn)
                .text
                .contains("截止时间：2026-12-01 10:15 (UTC+08:00)")
        );
        assert!(
            render(e, Lang::En)
                .text
                .contains("Due: 2026-12-01 10:15 (UTC+08:00)")
        );
        let e = &all_events("t")[3];
        assert!(
            render(e, Lang::En)
                .subject
                .contains("missed its resolution target")
        );
        let e = &all_events("t")[4];
        assert!(render(e, Lang::ZhCn).text.contains("评分（1–5 分）"));
        assert!(render(e, Lang::ZhCn).text.contains("  重建了个人层"));
    }

    fn alert_event(change: AlertChange, subject: &str) -> Event {
        Event::Alert {
            alert: AlertRef {
                id: "a1".into(),
                rule: "node_memory".into(),
                subject: subject.into(),
                url: Some("https://pvce.lab.example/#/alerts".into()),
            },
            change,
            level: "critical".into(),
            value: Some("97.5".into()),
            cause: Some("threshold".into()),
        }
    }

    fn term_event(name: &str, until: bool) -> Event {
        Event::TermEnding {
            course: CourseRef {
                id: "c1".into(),
                code: "OS-2026".into(),
                name: name.into(),
                url: Some("https://pvce.lab.example/#/courses".into()),
            },
            ends_at: time::macros::datetime!(2026-12-18 18:00 +8),
            download_until: until.then_some(time::macros::datetime!(2027-06-16 18:00 +8)),
        }
    }

    #[test]
    fn a_terms_end_says_until_when_and_how_in_both_languages() {
        let e = term_event("操作系统", true);
        assert!(e.ticket().is_none());
        assert_eq!(e.kind(), EventKind::Term);
        let zh = render(&e, Lang::ZhCn);
        let en = render(&e, Lang::En);
        assert_eq!(
            zh.subject,
            "[pvce] 课程 OS-2026「操作系统」即将结束：请在 2027-06-16 18:00 (UTC+08:00) 之前下载你的作业"
        );
        assert_eq!(
            en.subject,
            "[pvce] Course OS-2026 “操作系统” ends soon: download your work before 2027-06-16 18:00 (UTC+08:00)"
        );
        assert!(
            zh.text.contains("将于 2026-12-18 18:00 (UTC+08:00) 结束"),
            "{}",
            zh.text
        );
        assert!(
            zh.text.contains("“导出”")
                && zh
                    .text
                    .contains("我的课程：https://pvce.lab.example/#/courses")
        );
        assert!(
            en.text.contains("until 2027-06-16 18:00 (UTC+08:00)") && en.text.contains("Export")
        );
        assert!(
            en.text
                .contains("Open My courses: https://pvce.lab.example/#/courses")
        );
        assert!(en.markdown.contains("[Open My courses](https://"));
        let en_own = en.text.replace("操作系统", "");
        assert!(
            !en_own
                .chars()
                .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
            "{en_own}"
        );
        // Held: no date to download by, and it says so.
        let held = render(&term_event("OS", false), Lang::En);
        assert_eq!(held.subject, "[pvce] Course OS-2026 “OS” ends soon");
        assert!(
            held.text.contains("held by an administrator"),
            "{}",
            held.text
        );
        assert!(
            render(&term_event("OS", false), Lang::ZhCn)
                .text
                .contains("暂时保留")
        );
        // The teacher's course name cannot break the subject or the markdown.
        let evil = render(
            &term_event("n\r\nBcc: x@evil [x](http://evil)", true),
            Lang::En,
        );
        assert!(
            !evil.subject.chars().any(char::is_control),
            "{}",
            evil.subject
        );
        assert!(
            !evil.markdown.contains("[x](http://evil)"),
            "{}",
            evil.markdown
        );
        // It round-trips through the JSON the outbox stores.
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap_or_default())
            .unwrap_or_else(|_| term_event("", false));
        assert_eq!(back, e);
    }

    #[test]
    fn alerts_in_both_languages_without_a_ticket() {
        let fired = alert_event(AlertChange::Fired, "node-3");
        assert!(fired.ticket().is_none());
        let zh = render(&fired, Lang::ZhCn);
        let en = render(&fired, Lang::En);
        assert_eq!(zh.subject, "[pvce] 告警（严重）：node-3 的 node_memory");
        assert_eq!(en.subject, "[pvce] Alert (critical): node_memory on node-3");
        assert!(zh.text.contains("当前值：97.5") && zh.text.contains("查看告警：https://"));
        assert!(en.text.contains("Value: 97.5") && en.text.contains("acknowledge"));
        let resolved = render(&alert_event(AlertChange::Resolved, "node-3"), Lang::En);
        assert_eq!(
            resolved.subject,
            "[pvce] Alert resolved: node_memory on node-3"
        );
        assert!(!resolved.text.contains("acknowledge"), "{}", resolved.text);
        let up = render(&alert_event(AlertChange::Escalated, "node-3"), Lang::ZhCn);
        assert!(up.subject.contains("告警升级为严重"), "{}", up.subject);
        // A node's name is the admin's text: it cannot inject markdown or lines.
        let evil = render(
            &alert_event(AlertChange::Fired, "n\r\n[x](http://evil)"),
            Lang::En,
        );
        assert!(!evil.subject.chars().any(char::is_control));
        assert!(
            !evil.markdown.contains("[x](http://evil)"),
            "{}",
            evil.markdown
        );
    }

    #[test]
    fn user_text_cannot_break_the_subject_or_the_markdown() {
        let title =
            "黑屏\r\nBcc: victim@example.com\t[click](http://evil) <script>x</script> **bold**";
        for e in all_events(title) {
            for lang in [Lang::ZhCn, Lang::En] {
                let m = render(&e, lang);
                assert!(!m.subject.chars().any(char::is_control), "{:?}", m.subject);
                assert!(m.subject.chars().count() < 140);
                assert!(!m.markdown.contains("[click](http://evil)"));
                assert!(m.markdown.contains(r"\[click\]\(http://evil\)"));
                assert!(!m.markdown.contains("<script>"));
                assert!(!m.markdown.contains("**bold**"));
            }
        }
        let c = Event::Commented {
            ticket: ticket("t"),
            author: "a".into(),
            excerpt: "# heading\n> quote\n- item".into(),
        };
        let md = render(&c, Lang::En).markdown;
        assert!(
            md.contains("> \\# heading\n> \\> quote\n> \\- item"),
            "{md}"
        );
    }

    #[test]
    fn long_titles_are_cut_in_the_subject_only() {
        let long = "长".repeat(300);
        let m = render(&all_events(&long)[0], Lang::ZhCn);
        assert!(m.subject.ends_with('…'));
        assert!(m.text.contains(&long));
    }

    #[test]
    fn language_tags() {
        assert_eq!(Lang::from_tag("zh-CN"), Lang::ZhCn);
        assert_eq!(Lang::from_tag("zh"), Lang::ZhCn);
        assert_eq!(Lang::from_tag("zh_TW"), Lang::ZhCn);
        assert_eq!(Lang::from_tag("en-US"), Lang::En);
        assert_eq!(Lang::from_tag(""), Lang::En);
        assert_eq!(
            serde_json::to_value(Lang::ZhCn).unwrap_or_default(),
            "zh-CN"
        );
        assert_eq!(Lang::ZhCn.tag(), "zh-CN");
    }
}
