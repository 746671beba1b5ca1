//! Placement simulation: the real placement core ([`pvce::placement`]) driving
//! a simulated cluster of 1,000 nodes through 20,000 VM starts and stops, per
//! policy. Prints decisions per second (time inside `Reservations::place`),
//! refused starts, and how evenly the load ends up spread (standard deviation
//! of memory and vCPU utilisation across nodes, in percentage points).
//!
//! The cluster is deterministic (seeded): heterogeneous nodes (64–512 GiB,
//! 16–128 CPUs), 2 % down, 2 % in maintenance, 5 % without the template and
//! unable to receive it; VMs of 1–8 GiB and 1–4 vCPUs, as lab courses use.
//! A start's memory shows up in the node's figures once it has "booted"
//! (the reservation is released then), as on a real node.
//!
//! Run: `cargo bench --bench placement_sim`
//! (PVCE_SIM_NODES, PVCE_SIM_EVENTS override 1000 / 20000).
#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

use std::time::{Duration, Instant};

use pvce::placement::{Candidate, Constraint, Policy, Reservations};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

const RESERVE_MIB: u64 = 2048;

struct SimVm {
    node: usize,
    mem: u64,
    vcpus: u64,
}

fn cluster(n: usize, rng: &mut StdRng) -> (Vec<Candidate>, Vec<u64>) {
    let mut nodes = Vec::with_capacity(n);
    let mut cpus = Vec::with_capacity(n);
    for i in 0..n {
        let gib = [64, 128, 256, 512][rng.gen_range(0..4)];
        let cpu = [16, 32, 64, 128][rng.gen_range(0..4)];
        let roll: f64 = rng.r#gen();
        nodes.push(Candidate {
            node_id: Uuid::from_u128(i as u128 + 1),
            name: format!("node-{i:04}"),
            up: roll >= 0.02,
            maintenance: (0.02..0.04).contains(&roll),
            has_template: !(0.04..0.09).contains(&roll),
            mem_total_mib: gib * 1024,
            mem_used_mib: 2048, // the host itself
            cpu_percent: 0.0,
            vms_running: 0,
            unsupported: None,
        });
        cpus.push(cpu);
    }
    (nodes, cpus)
}

struct Outcome {
    decisions: usize,
    refused: usize,
    elapsed: Duration,
    mem_std: f64,
    cpu_std: f64,
    mem_mean: f64,
    running: usize,
}

fn simulate(policy: Policy, n_nodes: usize, events: usize) -> Outcome {
    let mut rng = StdRng::seed_from_u64(42);
    let (mut nodes, cpus) = cluster(n_nodes, &mut rng);
    let mut vcpus_used = vec![0_u64; n_nodes];
    let ledger = Reservations::default();
    let mut running: Vec<SimVm> = Vec::new();
    let (mut decisions, mut refused) = (0, 0);
    let mut elapsed = Duration::ZERO;
    for step in 0..events {
        // Fill the cluster first, then churn (a lab session: starts dominate
        // at the beginning, a mix afterwards).
        let start = running.is_empty() || step < events / 2 || rng.gen_bool(0.55);
        if start {
            let mem = [1024, 2048, 4096, 8192][rng.gen_range(0..4)];
            let vcpus = rng.gen_range(1..=4);
            let t0 = Instant::now();
            let placed = ledger.place(&nodes, mem, RESERVE_MIB, policy, Constraint::Anywhere);
            elapsed += t0.elapsed();
            decisions += 1;
            match placed {
                Ok(reservation) => {
                    let i = nodes
                        .iter()
                        .position(|c| c.node_id == reservation.node_id())
                        .unwrap();
                    // Booted: the node's figures now include the VM, and the
                    // reservation is released (dropped).
                    drop(reservation);
                    nodes[i].mem_used_mib += mem;
                    nodes[i].vms_running += 1;
                    vcpus_used[i] += vcpus;
                    nodes[i].cpu_percent =
                        (vcpus_used[i] as f64 * 100.0 / cpus[i] as f64).min(100.0);
                    running.push(SimVm {
                        node: i,
                        mem,
                        vcpus,
                    });
                }
                Err(_) => refused += 1,
            }
        } else {
            let vm = running.swap_remove(rng.gen_range(0..running.len()));
            let c = &mut nodes[vm.node];
            c.mem_used_mib -= vm.mem;
            c.vms_running -= 1;
            vcpus_used[vm.node] -= vm.vcpus;
            c.cpu_percent = (vcpus_used[vm.node] as f64 * 100.0 / cpus[vm.node] as f64).min(100.0);
        }
    }
    let usable: Vec<usize> = (0..n_nodes)
        .filter(|&i| nodes[i].up && !nodes[i].maintenance && nodes[i].has_template)
        .collect();
    let std = |f: &dyn Fn(usize) -> f64| {
        let xs: Vec<f64> = usable.iter().map(|&i| f(i)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        (mean, var.sqrt())
    };
    let (mem_mean, mem_std) =
        std(&|i| nodes[i].mem_used_mib as f64 * 100.0 / nodes[i].mem_total_mib as f64);
    let (_, cpu_std) = std(&|i| vcpus_used[i] as f64 * 100.0 / cpus[i] as f64);
    // Nothing may ever land where placement must not put it.
    for vm in &running {
        let c = &nodes[vm.node];
        assert!(c.up && !c.maintenance && c.has_template, "{}", c.name);
        assert!(
            c.mem_used_mib <= c.mem_total_mib,
            "{} over-committed",
            c.name
        );
    }
    Outcome {
        decisions,
        refused,
        elapsed,
        mem_std,
        cpu_std,
        mem_mean,
        running: running.len(),
    }
}

fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n_nodes = env("PVCE_SIM_NODES", 1000);
    let events = env("PVCE_SIM_EVENTS", 20_000);
    println!("placement simulation: {n_nodes} nodes, {events} starts/stops, seed 42");
    println!(
        "{:<11} {:>10} {:>12} {:>8} {:>8} {:>10} {:>10} {:>10}",
        "policy",
        "decisions",
        "decisions/s",
        "refused",
        "running",
        "mem mean%",
        "mem std",
        "vcpu std"
    );
    for (name, policy) in [
        ("spread", Policy::Spread),
        ("pack", Policy::Pack),
        ("load-aware", Policy::LoadAware),
    ] {
        let o = simulate(policy, n_nodes, events);
        println!(
            "{:<11} {:>10} {:>12.0} {:>8} {:>8} {:>10.1} {:>10.2} {:>10.2}",
            name,
            o.decisions,
            o.decisions as f64 / o.elapsed.as_secs_f64(),
            o.refused,
            o.running,
            o.mem_mean,
            o.mem_std,
            o.cpu_std
        );
    }
}
