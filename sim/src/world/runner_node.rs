//! A runner node: one runner process (`runner::RunnerClient`) and its single connection to some
//! edge. A crash of the node kills the process and every instance with it; when it comes back it
//! is a new process with a fresh `envoy_key` (`spec/protocol.md` §1.1).

use std::sync::Arc;

use pegsim_model::fact::ConnId;
use pegsim_model::runner::{RunnerClient, RunnerOutput, RunnerTimer};
use pegsim_model::wire::DataFrame;
use rand::Rng;
use tokio::sync::mpsc;

use crate::run::{Dir, Entry};
use crate::seed::SeedStreams;
use crate::world::config::WorldConfig;
use crate::world::edge_node::{edge_name, EDGE_PORT};
use crate::world::frames;
use crate::world::mail::{RunnerMsg, MAILBOX_CAPACITY};
use crate::world::runner_config;
use crate::world::shared::{NodeRng, Shared};
use crate::world::timers::Timers;
use crate::world::transport::{self, WsConn, WsEvent};

/// Name of runner node `index`.
pub fn runner_name(index: usize) -> String {
    format!("runner-{index}")
}

/// The runner node's task: runs the process until it exits or the node is killed.
pub async fn run(shared: Shared, config: Arc<WorldConfig>, index: usize) {
    let node = runner_name(index);
    let incarnation = shared.next_incarnation(&node);
    let (tx, mut rx) = mpsc::channel(MAILBOX_CAPACITY);
    let clock = {
        let mut st = shared.lock();
        st.mail.runners.insert(index, tx);
        st.clock
    };
    let mut rng =
        NodeRng(SeedStreams::new(config.seed).stream(&format!("node:{node}#{incarnation}")));
    let (mut client, outputs) = shared.with_runner_env(&node, &mut rng, |env| {
        RunnerClient::new(env, runner_config(&config, index, incarnation))
    });
    shared.record(
        &node,
        Entry::Node {
            node: node.clone(),
            event: format!("start #{incarnation} as {}", client.id()),
        },
    );
    let mut task = RunnerTask {
        shared: shared.clone(),
        config,
        node,
        index,
        timers: Timers::default(),
        conn: None,
        pending: None,
    };
    if task.apply(&mut client, &mut rng, outputs).await {
        return task.exit();
    }
    loop {
        let now = clock.now_ms();
        if let Some(timer) = task.timers.pop_due(now) {
            let outputs =
                shared.with_runner_env(&task.node, &mut rng, |env| client.on_timer(env, timer));
            if task.apply(&mut client, &mut rng, outputs).await {
                return task.exit();
            }
            continue;
        }
        let outputs = tokio::select! {
            // Branches in the written order: tokio picks a random order otherwise, from a
            // thread RNG seeded with a process-wide counter (different for every world of a process).
            biased;
            ev = recv(&mut task.conn) => {
                let (conn, ev) = ev;
                match ev {
                    Ok(WsEvent::Binary(bytes)) => {
                        frames::record(&shared, &task.node, conn, Some(client.id()), Dir::ToRunner, true, &bytes, false);
                        shared.with_runner_env(&task.node, &mut rng, |env| client.on_frame(env, conn, DataFrame::Binary(&bytes)))
                    }
                    Ok(WsEvent::Text(text)) => {
                        frames::record(&shared, &task.node, conn, Some(client.id()), Dir::ToRunner, true, text.as_bytes(), true);
                        shared.with_runner_env(&task.node, &mut rng, |env| client.on_frame(env, conn, DataFrame::Text(&text)))
                    }
                    Ok(WsEvent::Closed { reason, .. }) => {
                        task.drop_conn(&client, &format!("peer closed: {reason}"));
                        shared.with_runner_env(&task.node, &mut rng, |env| client.on_closed(env, conn, Some(&reason)))
                    }
                    Err(e) => {
                        task.drop_conn(&client, &format!("transport: {e}"));
                        shared.with_runner_env(&task.node, &mut rng, |env| client.on_closed(env, conn, None))
                    }
                }
            }
            msg = rx.recv() => {
                let Some(msg) = msg else { return task.exit() };
                match msg {
                    RunnerMsg::App(actor, action) => {
                        shared.with_runner_env(&task.node, &mut rng, |env| client.app(env, &actor, action))
                    }
                    RunnerMsg::Shutdown => shared.with_runner_env(&task.node, &mut rng, |env| client.shutdown(env)),
                    RunnerMsg::Connected(conn, ws) => {
                        if task.pending == Some(conn) && task.conn.is_none() {
                            task.pending = None;
                            task.conn = Some((conn, *ws));
                            shared.record(&task.node, Entry::Link { conn, runner: Some(client.id()), event: "open".into() });
                            shared.with_runner_env(&task.node, &mut rng, |env| client.on_open(env, conn))
                        } else {
                            // An attempt the process no longer waits for: close it at once.
                            let mut ws = *ws;
                            let _ = ws.close("abandoned", 1000).await;
                            transport::forget(&shared, conn);
                            Vec::new()
                        }
                    }
                    RunnerMsg::ConnectFailed(conn, why) => {
                        if task.pending == Some(conn) {
                            task.pending = None;
                            shared.record(&task.node, Entry::Link { conn, runner: Some(client.id()), event: format!("connect failed: {why}") });
                            shared.with_runner_env(&task.node, &mut rng, |env| client.on_connect_failed(env, conn))
                        } else {
                            Vec::new()
                        }
                    }
                }
            }
            _ = madsim::time::sleep_until(task.timers.next_instant(&clock)) => Vec::new(),
        };
        if task.apply(&mut client, &mut rng, outputs).await {
            return task.exit();
        }
        task.publish_instances(&client);
    }
}

/// Wait for the next event of the current connection; pending forever when there is none.
async fn recv(
    conn: &mut Option<(ConnId, WsConn)>,
) -> (ConnId, Result<WsEvent, transport::NetError>) {
    match conn {
        Some((id, ws)) => (*id, ws.recv().await),
        None => std::future::pending().await,
    }
}

struct RunnerTask {
    shared: Shared,
    config: Arc<WorldConfig>,
    node: String,
    index: usize,
    timers: Timers<RunnerTimer>,
    /// The open connection.
    conn: Option<(ConnId, WsConn)>,
    /// The connection attempt in progress.
    pending: Option<ConnId>,
}

impl RunnerTask {
    fn drop_conn(&mut self, client: &RunnerClient, why: &str) {
        if let Some((conn, _)) = self.conn.take() {
            self.shared.record(
                &self.node,
                Entry::Link { conn, runner: Some(client.id()), event: why.to_string() },
            );
            transport::forget(&self.shared, conn);
        }
    }

    /// Carry out the process's outputs. Returns true when the process exits.
    async fn apply(
        &mut self,
        client: &mut RunnerClient,
        rng: &mut NodeRng,
        outputs: Vec<RunnerOutput>,
    ) -> bool {
        let mut queue: std::collections::VecDeque<RunnerOutput> = outputs.into();
        while let Some(out) = queue.pop_front() {
            match out {
                RunnerOutput::Connect { path_and_query, subprotocols } => {
                    if let Some((old, mut ws)) = self.conn.take() {
                        let _ = ws.close("reconnecting", 1000).await;
                        transport::forget(&self.shared, old);
                    }
                    let edge = rng.0.gen_range(0..self.config.edges());
                    let conn = self.shared.next_conn_id();
                    self.pending = Some(conn);
                    let shared = self.shared.clone();
                    let max_frame = self.config.engine.timing.max_frame_bytes;
                    let index = self.index;
                    let port =
                        self.shared.lock().edge_ports.get(&edge).copied().unwrap_or(EDGE_PORT);
                    self.shared.record(
                        &self.node,
                        Entry::Link {
                            conn,
                            runner: Some(client.id()),
                            event: format!("connecting to {}", edge_name(edge)),
                        },
                    );
                    madsim::task::spawn(async move {
                        let result = transport::connect(
                            &shared,
                            index,
                            edge,
                            port,
                            conn,
                            &path_and_query,
                            &subprotocols,
                            max_frame,
                        )
                        .await;
                        let msg = match result {
                            Ok(ws) => RunnerMsg::Connected(conn, Box::new(ws)),
                            Err(e) => RunnerMsg::ConnectFailed(conn, e.to_string()),
                        };
                        shared.lock().mail.to_runner(index, msg);
                    });
                }
                RunnerOutput::Send { conn, bytes } => {
                    let Some((current, ws)) = self.conn.as_mut() else { continue };
                    if *current != conn {
                        continue;
                    }
                    frames::record(
                        &self.shared,
                        &self.node,
                        conn,
                        Some(client.id()),
                        Dir::ToEngine,
                        false,
                        &bytes,
                        false,
                    );
                    if let Err(e) = ws.send_binary(bytes).await {
                        self.drop_conn(client, &format!("send failed: {e}"));
                        let more = self.shared.with_runner_env(&self.node, rng, |env| {
                            client.on_closed(env, conn, None)
                        });
                        queue.extend(more);
                    }
                }
                RunnerOutput::Close { conn, reason } => {
                    if self.conn.as_ref().is_some_and(|(c, _)| *c == conn) {
                        if let Some((_, mut ws)) = self.conn.take() {
                            let _ = ws.close(&reason.to_close_frame_reason(), reason.code()).await;
                        }
                        self.shared.record(
                            &self.node,
                            Entry::Link {
                                conn,
                                runner: Some(client.id()),
                                event: format!("closed by runner: {reason}"),
                            },
                        );
                        transport::forget(&self.shared, conn);
                    }
                    if self.pending == Some(conn) {
                        self.pending = None;
                    }
                }
                RunnerOutput::Timer { at_ms, timer } => {
                    let at = self.shared.sim_at(&self.node, at_ms);
                    self.timers.insert(at, timer);
                }
                RunnerOutput::Exit { reason } => {
                    self.shared.record(
                        &self.node,
                        Entry::Node { node: self.node.clone(), event: format!("exit: {reason}") },
                    );
                    if let Some((conn, mut ws)) = self.conn.take() {
                        let _ = ws.close("envoy.shutdown", 1000).await;
                        transport::forget(&self.shared, conn);
                    }
                    return true;
                }
            }
        }
        false
    }

    fn publish_instances(&self, client: &RunnerClient) {
        let mut st = self.shared.lock();
        st.instances.retain(|_, (i, _)| *i != self.index);
        for (actor, generation) in client.instances() {
            st.instances.insert(actor, (self.index, generation));
        }
    }

    fn exit(&self) {
        let mut st = self.shared.lock();
        st.instances.retain(|_, (i, _)| *i != self.index);
        st.mail.runners.remove(&self.index);
    }
}
