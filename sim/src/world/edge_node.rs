//! An edge node: accepts runner connections and runs one `EdgeConn` per connection, each in its
//! own task. A crash of the node ends every connection without teardown (the tasks just stop);
//! the runner notices through its ping timeout.

use std::sync::Arc;

use pegsim_model::engine::conn::{EdgeConn, EdgeOutput, EdgeTimer};
use pegsim_model::engine::EngineOutput;
use pegsim_model::fact::ConnId;
use pegsim_model::wire::DataFrame;
use tokio::sync::mpsc;

use crate::run::{Dir, Entry};
use crate::seed::SeedStreams;
use crate::world::bus;
use crate::world::config::WorldConfig;
use crate::world::frames;
use crate::world::mail::{ConnMsg, CoreMsg, MAILBOX_CAPACITY};
use crate::world::shared::{NodeRng, Shared};
use crate::world::timers::Timers;
use crate::world::transport::{self, Accepted, WsConn, WsEvent};

/// The port the first incarnation of every edge listens on; incarnation `n` uses `EDGE_PORT + n`.
pub const EDGE_PORT: u16 = 6420;

/// Name of edge node `index`.
pub fn edge_name(index: usize) -> String {
    format!("edge-{index}")
}

/// The edge node's task: accept connections until the node is killed. Each incarnation listens
/// on its own port (madsim keeps a port bound while streams accepted on it live), published in
/// the shared state for runners to find.
pub async fn run(shared: Shared, config: Arc<WorldConfig>, index: usize) {
    let node = edge_name(index);
    let incarnation = shared.next_incarnation(&node);
    let port = EDGE_PORT + incarnation as u16;
    shared.record(
        &node,
        Entry::Node { node: node.clone(), event: format!("start #{incarnation} on port {port}") },
    );
    let listener = match transport::listen(port).await {
        Ok(l) => l,
        Err(e) => {
            shared.record(
                &node,
                Entry::Node { node: node.clone(), event: format!("listen failed: {e}") },
            );
            return;
        }
    };
    shared.lock().edge_ports.insert(index, port);
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let (shared, config, node) = (shared.clone(), config.clone(), node.clone());
                madsim::task::spawn(async move {
                    let max_frame = config.engine.timing.max_frame_bytes;
                    match transport::upgrade(&shared, stream, max_frame).await {
                        Ok(accepted) => serve(shared, config, node, accepted).await,
                        Err(e) => shared.record(
                            &node,
                            Entry::Node {
                                node: node.clone(),
                                event: format!("upgrade failed: {e}"),
                            },
                        ),
                    }
                });
            }
            Err(e) => {
                shared.record(
                    &node,
                    Entry::Node { node: node.clone(), event: format!("accept failed: {e}") },
                );
            }
        }
    }
}

/// One connection's task.
async fn serve(shared: Shared, config: Arc<WorldConfig>, node: String, accepted: Accepted) {
    let Accepted { conn, mut ws, path_and_query, subprotocols } = accepted;
    let (tx, mut rx) = mpsc::channel(MAILBOX_CAPACITY);
    let clock = {
        let mut st = shared.lock();
        st.mail.conns.insert(conn, tx);
        st.clock
    };
    shared.record(
        &node,
        Entry::Link { conn, runner: None, event: format!("accepted {path_and_query}") },
    );
    let mut rng = NodeRng(SeedStreams::new(config.seed).stream(&format!("conn:{conn}")));
    let (mut edge, outputs) = shared.with_env(&node, &mut rng, |env| {
        EdgeConn::accept(env, &config.engine, conn, &path_and_query, &subprotocols)
    });
    let mut task = ConnTask {
        shared: shared.clone(),
        node,
        conn,
        timers: Timers::default(),
        socket_open: true,
    };
    task.apply(&mut ws, &mut edge, &mut rng, outputs).await;
    while !edge.is_finished() {
        let now = clock.now_ms();
        if let Some(timer) = task.timers.pop_due(now) {
            let outputs = shared.with_env(&task.node, &mut rng, |env| edge.on_timer(env, timer));
            task.apply(&mut ws, &mut edge, &mut rng, outputs).await;
            continue;
        }
        let socket_open = task.socket_open;
        tokio::select! {
            // Branches in the written order: tokio picks a random order otherwise, from a
            // thread RNG seeded with a process-wide counter (different for every world of a process).
            biased;
            ev = ws.recv(), if socket_open => {
                let outputs = match ev {
                    Ok(WsEvent::Binary(bytes)) => {
                        frames::record(&shared, &task.node, conn, edge.runner().cloned(), Dir::ToEngine, true, &bytes, false);
                        shared.with_env(&task.node, &mut rng, |env| edge.on_frame(env, DataFrame::Binary(&bytes)))
                    }
                    Ok(WsEvent::Text(text)) => {
                        frames::record(&shared, &task.node, conn, edge.runner().cloned(), Dir::ToEngine, true, text.as_bytes(), true);
                        shared.with_env(&task.node, &mut rng, |env| edge.on_frame(env, DataFrame::Text(&text)))
                    }
                    Ok(WsEvent::Closed { reason, .. }) => {
                        task.socket_closed(edge.runner().cloned(), &format!("peer closed: {reason}"));
                        shared.with_env(&task.node, &mut rng, |env| edge.on_socket_closed(env))
                    }
                    Err(e) => {
                        task.socket_closed(edge.runner().cloned(), &format!("transport: {e}"));
                        shared.with_env(&task.node, &mut rng, |env| edge.on_socket_closed(env))
                    }
                };
                task.apply(&mut ws, &mut edge, &mut rng, outputs).await;
            }
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                let outputs = shared.with_env(&task.node, &mut rng, |env| match msg {
                    ConnMsg::Subscribed => edge.on_subscribed(env),
                    ConnMsg::Bus(topic, message) => edge.on_bus(env, &topic, &message),
                    ConnMsg::SignalResult { token, result } => edge.on_signal_result(env, token, result),
                });
                task.apply(&mut ws, &mut edge, &mut rng, outputs).await;
            }
            _ = madsim::time::sleep_until(task.timers.next_instant(&clock)) => {}
        }
    }
    {
        let mut st = shared.lock();
        st.mail.conns.remove(&conn);
        st.mail.unsubscribe_all(conn);
    }
    transport::forget(&shared, conn);
}

struct ConnTask {
    shared: Shared,
    node: String,
    conn: ConnId,
    timers: Timers<EdgeTimer>,
    socket_open: bool,
}

impl ConnTask {
    fn socket_closed(&mut self, runner: Option<pegsim_model::keys::RunnerId>, why: &str) {
        self.socket_open = false;
        self.shared
            .record(&self.node, Entry::Link { conn: self.conn, runner, event: why.to_string() });
    }

    /// Carry out an edge connection's outputs; a failed send ends the socket and the connection
    /// is told, whose outputs are carried out in turn.
    async fn apply(
        &mut self,
        ws: &mut WsConn,
        edge: &mut EdgeConn,
        rng: &mut NodeRng,
        outputs: Vec<EdgeOutput>,
    ) {
        let mut queue: std::collections::VecDeque<EdgeOutput> = outputs.into();
        while let Some(out) = queue.pop_front() {
            match out {
                EdgeOutput::Send(bytes) => {
                    if !self.socket_open {
                        continue;
                    }
                    frames::record(
                        &self.shared,
                        &self.node,
                        self.conn,
                        edge.runner().cloned(),
                        Dir::ToRunner,
                        false,
                        &bytes,
                        false,
                    );
                    if let Err(e) = ws.send_binary(bytes).await {
                        self.socket_closed(edge.runner().cloned(), &format!("send failed: {e}"));
                        let more =
                            self.shared.with_env(&self.node, rng, |env| edge.on_socket_closed(env));
                        queue.extend(more);
                    }
                }
                EdgeOutput::Close(reason) => {
                    if self.socket_open {
                        let text = reason.to_string();
                        self.socket_closed(
                            edge.runner().cloned(),
                            &format!("closed by edge: {text}"),
                        );
                        let _ = ws.close(&reason.to_close_frame_reason(), reason.code()).await;
                    }
                }
                EdgeOutput::Subscribe(topics) => bus::subscribe(&self.shared, self.conn, topics),
                EdgeOutput::Unsubscribe(_) => self.shared.lock().mail.unsubscribe_all(self.conn),
                EdgeOutput::Engine(EngineOutput::Publish { topic, message }) => {
                    bus::publish(&self.shared, &self.node, topic, message)
                }
                EdgeOutput::Engine(EngineOutput::WakeWorkflow { actor }) => {
                    self.shared.lock().mail.to_core(CoreMsg::Wake(actor));
                }
                EdgeOutput::Engine(EngineOutput::TriggerDrainer { namespace, pool }) => {
                    self.shared.lock().mail.to_core(CoreMsg::TriggerDrainer { namespace, pool });
                }
                EdgeOutput::Signal { actor, signal, token } => {
                    bus::send_signal(&self.shared, self.conn, actor, signal, token)
                }
                EdgeOutput::Timer { at_ms, timer } => {
                    let at = self.shared.sim_at(&self.node, at_ms);
                    self.timers.insert(at, timer);
                }
            }
        }
    }
}
