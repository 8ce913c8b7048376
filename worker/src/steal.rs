//! Work stealing between workers: the thief's loop and the victim's answer.
//!
//! Thief: while it has a free slot and nothing queued, a worker picks a victim among the peers the controller
//! named in its last heartbeat answer (the deeper of two random peers with jobs queued) and asks it for jobs,
//! up to its own free room. Attempts are paced: at most one per [`MIN_INTERVAL`], and after each empty answer
//! the pause doubles, up to [`MAX_INTERVAL`], so an idle cluster does not chatter.
//!
//! Victim, in order, so that the controller always knows who holds each job:
//! 1. take up to half of the queued jobs its own free slots will not start now (the newest ones) out of its
//!    local queue, so it cannot start them meanwhile;
//! 2. record the move at the controller (`TransferLeases`: each job gets epoch + 1, held by the thief);
//! 3. put back whatever the controller refused, and hand the rest, with their new epochs, to the thief.
//!
//! # Guarantees
//! - A job moves only while not started, and only with the controller's record of it; the victim's later reports
//!   about a moved job are refused as stale.
//! - No job is lost to a death mid-steal: if the victim dies before step 2, its leases expire with it; if it dies
//!   after, or the answer to the thief is lost, the thief's heartbeats do not list the job and the controller
//!   queues it again; if the thief dies, its leases expire with it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use burst_proto::v1::worker_peer_rpc_client::WorkerPeerRpcClient;
use burst_proto::v1::{Lease, LeaseRef, PeerInfo, StealJobsRequest, TransferLeasesRequest};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;
use tracing::debug;

use crate::agent::Agent;
use crate::error::WorkerError;

/// Shortest pause between two steal attempts: bounds attempts to 50 per second per worker.
const MIN_INTERVAL: Duration = Duration::from_millis(20);
/// Longest pause after a run of empty answers: an idle worker asks about once a second.
const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// A victim that does not answer in this long is skipped.
const STEAL_TIMEOUT: Duration = Duration::from_secs(2);

/// The deeper of two random peers that have something queued (the only one, if just one has).
pub fn choose_victim(peers: &[PeerInfo], rng: &mut impl Rng) -> Option<usize> {
    let candidates: Vec<usize> = (0..peers.len()).filter(|&i| peers[i].queued > 0).collect();
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0]),
        n => {
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            let (a, b) = (candidates[a], candidates[b]);
            Some(if peers[b].queued > peers[a].queued { b } else { a })
        }
    }
}

/// How many queued jobs a victim gives: half (rounded up) of those its free slots will not start now, and no
/// more than the thief can take.
pub fn spare(queued: usize, free_slots: usize, thief_room: usize) -> usize {
    queued.saturating_sub(free_slots).div_ceil(2).min(thief_room)
}

/// The pause before the next attempt, after `empty` empty answers in a row.
pub fn pause(empty: u32) -> Duration {
    MIN_INTERVAL.saturating_mul(1 << empty.min(10)).min(MAX_INTERVAL)
}

pub async fn thief_loop(agent: Arc<Agent>) {
    if !agent.config().steal {
        return;
    }
    agent.registered().await;
    let mut rng = SmallRng::seed_from_u64(rand::random());
    let mut clients: HashMap<String, WorkerPeerRpcClient<Channel>> = HashMap::new();
    let mut empty = 0;
    loop {
        let woken = agent.steal_wake.notified();
        let peers = agent.peers();
        let victim = choose_victim(&peers, &mut rng).map(|i| peers[i].clone());
        let (Some(victim), Some(room)) = (victim, idle_room(&agent)) else {
            woken.await;
            continue;
        };
        agent.steal_attempts.fetch_add(1, Ordering::Relaxed);
        match ask(&agent, &mut clients, &victim, room).await {
            Ok((leases, left)) if !leases.is_empty() => {
                debug!(from = %victim.worker_id, jobs = leases.len(), "stole jobs");
                agent.counters.stolen.inc_by(leases.len() as u64);
                agent.set_peer_queued(&victim.worker_id, left);
                agent.queue.push(leases);
                empty = 0;
            }
            Ok((_, left)) => {
                agent.set_peer_queued(&victim.worker_id, left);
                empty += 1;
            }
            Err(error) => {
                debug!(from = %victim.worker_id, %error, "steal failed");
                agent.set_peer_queued(&victim.worker_id, 0);
                clients.remove(&victim.address);
                empty += 1;
            }
        }
        tokio::time::sleep(pause(empty)).await;
    }
}

/// The room a thief has when it is idle (a free slot, nothing queued), or `None` when it is not.
fn idle_room(agent: &Agent) -> Option<u32> {
    let cfg = agent.config();
    let (busy, queued) = (agent.busy(), agent.queue.len() as u32);
    let queue = agent.queue_target().unwrap_or(cfg.queue_capacity);
    (busy < cfg.slots && queued == 0).then(|| (cfg.slots + queue).saturating_sub(busy + queued))
}

async fn ask(
    agent: &Agent,
    clients: &mut HashMap<String, WorkerPeerRpcClient<Channel>>,
    victim: &PeerInfo,
    room: u32,
) -> Result<(Vec<Lease>, u32), WorkerError> {
    let client = match clients.get(&victim.address) {
        Some(c) => c.clone(),
        None => {
            let endpoint = burst_proto::tls::endpoint(&victim.address)
                .map_err(|e| WorkerError::BadRequest(format!("peer {}: {e}", victim.address)))?;
            let c =
                WorkerPeerRpcClient::new(burst_proto::tls::lazy(&endpoint, agent.tls(), burst_proto::tls::WORKER_NAME));
            clients.insert(victim.address.clone(), c.clone());
            c
        }
    };
    let req = StealJobsRequest { thief_worker_id: agent.worker_id().to_string(), max_jobs: room };
    let resp = tokio::time::timeout(STEAL_TIMEOUT, client.clone().steal_jobs(req))
        .await
        .map_err(|_| WorkerError::NoAnswer(format!("victim {}", victim.worker_id)))?
        .map_err(WorkerError::call("StealJobs"))?
        .into_inner();
    Ok((resp.leases, resp.queued))
}

/// The victim's side of a steal: see the module docs for the steps. Returns the leases handed over (with their
/// new epochs) and what is left queued.
pub async fn give(agent: &Agent, thief: &str, max_jobs: u32) -> Result<(Vec<Lease>, u32), WorkerError> {
    if thief == agent.worker_id() {
        return Err(WorkerError::BadRequest("a worker cannot steal from itself".into()));
    }
    let free_slots = agent.config().slots.saturating_sub(agent.busy()) as usize;
    let taken = agent.queue.take_newest(|queued| spare(queued, free_slots, max_jobs as usize));
    if taken.is_empty() {
        return Ok((Vec::new(), agent.queue.len() as u32));
    }
    // In hand while it moves: a heartbeat meanwhile still lists them, so the controller does not take them back.
    let moving = agent.runs.moving(&taken);
    let moved = transfer(agent, thief, &taken).await;
    let epochs: HashMap<String, u64> = match moved {
        Ok(moved) => moved.into_iter().map(|r| (r.job_id, r.epoch)).collect(),
        Err(status) => {
            agent.queue.put_back(taken);
            drop(moving);
            return Err(status);
        }
    };
    let (mut given, mut kept) = (Vec::new(), Vec::new());
    for mut lease in taken {
        match epochs.get(&lease.job_id) {
            Some(&epoch) => {
                lease.epoch = epoch;
                given.push(lease);
            }
            None => kept.push(lease),
        }
    }
    agent.queue.put_back(kept);
    drop(moving);
    agent.counters.given.inc_by(given.len() as u64);
    Ok((given, agent.queue.len() as u32))
}

async fn transfer(agent: &Agent, thief: &str, taken: &[Lease]) -> Result<Vec<LeaseRef>, WorkerError> {
    let req = TransferLeasesRequest {
        worker_id: agent.worker_id().to_string(),
        session: agent.session(),
        thief_worker_id: thief.to_string(),
        leases: taken.iter().map(Lease::to_ref).collect(),
    };
    let answer = agent.client().transfer_leases(req).await.map_err(WorkerError::call("TransferLeases"))?;
    Ok(answer.into_inner().transferred)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, queued: u32) -> PeerInfo {
        PeerInfo { worker_id: id.into(), address: String::new(), queued, free_slots: 0 }
    }

    #[test]
    fn the_victim_is_the_deeper_of_two_and_never_an_empty_peer() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(choose_victim(&[peer("a", 0), peer("b", 0)], &mut rng), None);
        assert_eq!(choose_victim(&[peer("a", 0), peer("b", 3)], &mut rng), Some(1));
        for _ in 0..50 {
            assert_eq!(choose_victim(&[peer("a", 1), peer("b", 9)], &mut rng), Some(1));
        }
    }

    #[test]
    fn a_victim_spares_half_of_what_its_free_slots_will_not_start() {
        assert_eq!(spare(8, 0, 100), 4);
        assert_eq!(spare(1, 0, 100), 1, "a lone queued job behind busy slots can move");
        assert_eq!(spare(3, 2, 100), 1);
        assert_eq!(spare(2, 2, 100), 0, "its own free slots will start them");
        assert_eq!(spare(10, 0, 3), 3, "bounded by the thief's room");
    }

    #[test]
    fn empty_answers_slow_the_thief_down_to_once_a_second() {
        assert_eq!(pause(0), MIN_INTERVAL);
        assert_eq!(pause(1), MIN_INTERVAL * 2);
        assert_eq!(pause(30), MAX_INTERVAL);
    }
}
