//! pvce: a virtualized lab-environment orchestrator.
//!
//! A control server drives libvirt nodes to run students' personal
//! copy-on-write VMs on course templates. The library half of the crate is
//! exposed so black-box tests can start the real server on port 0
//! ([`app::start`]); `main.rs` only parses the command line.
//!
//! Modules, one per domain concept:
//! - people: [`auth`] (sessions, roles, sign-in protection), [`users`],
//!   [`directory`] (the LDAP directory sync),
//!   [`audit`] (the audit log of security-relevant actions),
//!   [`names`] (the rule for names people give things);
//! - courses and templates: [`courses`], [`templates`] (the template tree),
//!   [`library`] (the built-in template library), [`builds`] (derive a
//!   template online), [`images`] (disk images: checks, conversion, overlays);
//! - VMs: [`vms`] (personal and build VMs, their lifecycle, and in
//!   [`vms::layers`] where a personal layer lives), [`vms::snapshots`], [`portable`] (export and
//!   import a personal layer), [`collect`] (a course's work as one archive),
//!   [`console`] (the console proxy), [`labnets`] (per-student lab networks);
//! - the service: [`desk`] (tickets, SLA clocks and the service calendar,
//!   knowledge base, problems, statistics, and in [`desk::notify`] the
//!   e-mail and webhook senders), [`alerts`] (alert levels, baselines,
//!   forecasts), [`inspection`] (the daily inspection), [`slo`] (service
//!   level indicators, objectives, the status page), [`quantile`]
//!   (percentiles, one definition for all figures), [`range`] (the time
//!   range the figures are asked for);
//! - the cluster: [`nodes`], [`placement`], [`stores`] (template stores on
//!   nodes), [`monitor`] (load history), [`events`] (the event log),
//!   [`libvirt`] (the only one that talks to libvirt);
//! - class time: [`usage`] (usage metering from the VMs' power history,
//!   hour budgets and quotas), [`idle`] (idle auto-stop);
//! - deployments: [`installation`]
//!   (this deployment's id, the names and marks of its libvirt objects);
//! - keeping data: [`backup`] (personal layers and the control plane in a
//!   restic repository), [`mydata`] (a person's own data, one download), [`term`] (the end
//!   of a term: archive, retention, erasure, holds);
//! - the server itself: [`storage`] (files under the data dir), [`space`]
//!   (running out of disk), [`fsck`] (the invariant check and safe repairs), [`crashpoint`] (where the chaos
//!   suite kills the server), [`health`], [`logging`], [`config`], [`db`],
//!   [`dbmove`] (moving a SQLite installation into PostgreSQL),
//!   [`patch`] (partial updates: a field left out keeps its value),
//!   [`daily`] (a time of day something runs at);
//! - wiring: [`state`] (the shared application state), [`http`] (the API,
//!   the web UI and `/metrics`), [`app`] (start-up, background loops,
//!   serving), [`cli`].

pub mod alerts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod builds;
pub mod classtime;
pub mod cli;
pub mod collect;
pub mod config;
pub mod console;
pub mod courses;
pub mod crashpoint;
pub mod daily;
pub mod db;
pub mod dbmove;
pub mod desk;
pub mod directory;
pub mod events;
pub mod fsck;
pub mod health;
pub mod http;
pub mod idle;
pub mod images;
pub mod inspection;
pub mod installation;
pub mod labnets;
pub mod lease;
pub mod library;
pub mod libvirt;
pub mod logging;
pub mod monitor;
pub mod mydata;
pub mod names;
pub mod nodes;
pub mod patch;
pub mod placement;
pub mod portable;
pub mod quantile;
pub mod range;
pub mod reports;
pub mod slo;
pub mod space;
pub mod state;
pub mod storage;
pub mod stores;
pub mod templates;
pub mod term;
#[cfg(test)]
mod testkit;
pub mod upgrade;
pub mod usage;
pub mod users;
pub mod vms;
pub mod wall;
