//! pvce: a virtualized lab-environment orchestrator.
//!
//! A control server drives libvirt nodes to run students' personal
//! copy-on-write VMs on course templates. The library half of the crate is
//! exposed so black-box tests can start the real server on port 0
//! ([`app::start`]); `main.rs` only parses the command line.
//!
//! Modules, one per domain concept: [`auth`], [`users`], [`nodes`],
//! [`templates`], [`images`], [`courses`], [`vms`], [`placement`], [`events`], [`desk`] (the service desk), [`libvirt`]
//! (the only one that talks to libvirt), [`storage`], [`db`]; the HTTP API
//! in [`http`]; wiring in [`app`] and [`cli`].

pub mod app;
pub mod auth;
pub mod builds;
pub mod cli;
pub mod collect;
pub mod config;
pub mod console;
pub mod courses;
pub mod db;
pub mod desk;
pub mod events;
pub mod health;
pub mod http;
pub mod images;
pub mod labnets;
pub mod layers;
pub mod library;
pub mod libvirt;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod names;
pub mod nodes;
pub mod notify;
pub mod placement;
pub mod portable;
pub mod snapshots;
pub mod space;
pub mod storage;
pub mod stores;
pub mod templates;
pub mod users;
pub mod vms;
pub mod web;
