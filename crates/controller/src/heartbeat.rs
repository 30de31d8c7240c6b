//! The active controller's view of broker sessions (KRaft's `BrokerHeartbeatManager`,
//! KIP-631): who heartbeat when, whose session lapsed, and what a heartbeat asks for.
//! Sans-io: time is passed in as milliseconds and the caller performs the decisions
//! (fence and unfence records through Raft), then reports them back.
//!
//! Timing rules:
//! - a broker is fenced when `now >= last_contact + session_timeout` (Kafka's
//!   `broker.session.timeout.ms`, default 9000), so a pause shorter than the timeout
//!   (e.g. half of it) fences nobody;
//! - a broken heartbeat connection ([`BrokerHeartbeatManager::connection_lost`]) fences
//!   after `loss_grace` unless a heartbeat arrives first, so a crashed process is fenced
//!   fast while a transient reconnect is not; if the caller then confirms the broker
//!   down ([`BrokerHeartbeatManager::confirmed_down`]: every endpoint refused a
//!   connection, so the process is gone), it is fenced without waiting out the grace;
//! - becoming active starts every session at `now`: a leader change alone fences nobody,
//!   since the heartbeats of the old term went to the old controller. The exception is the
//!   previous active controller when it was itself a broker: it is treated as having lost
//!   its connection at `now`, so if it died with the controller it is fenced after the
//!   grace rather than after a whole session.

use std::collections::BTreeMap;

/// Kafka's default `broker.session.timeout.ms`.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 9000;
/// Default `broker.heartbeat.loss.grace.ms` (a Sluice setting): long enough for a live
/// broker to reconnect after its stream dropped (it does so at once, in milliseconds),
/// short enough that a crashed broker the lifecycle's probe cannot confirm down (its host
/// unreachable rather than refusing) is fenced well before its session would lapse.
pub const DEFAULT_LOSS_GRACE_MS: u64 = 200;

/// Session timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: u64,
    /// `broker.heartbeat.loss.grace.ms`.
    pub loss_grace_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            loss_grace_ms: DEFAULT_LOSS_GRACE_MS,
        }
    }
}

/// Why a heartbeat or registration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Kafka's BROKER_ID_NOT_REGISTERED: the broker must register (again).
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    /// Kafka's STALE_BROKER_EPOCH: the heartbeat is from an older registration.
    #[error("broker {id}: epoch {got} is stale (registered epoch {current})")]
    StaleBrokerEpoch { id: i32, got: i64, current: i64 },
    /// Kafka's DUPLICATE_BROKER_REGISTRATION: another incarnation of this id still has a
    /// live session.
    #[error("broker {0} is registered by another incarnation with a live session")]
    DuplicateRegistration(i32),
}

/// One heartbeat, as the broker sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub broker: i32,
    pub epoch: i64,
    /// The last metadata log offset the broker has applied.
    pub metadata_offset: u64,
    /// The broker asks to stay (or become) fenced, e.g. while it is still loading logs.
    pub want_fence: bool,
    /// The broker asks for a controlled shutdown.
    pub want_shutdown: bool,
}

/// What the caller must write for a heartbeat before answering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatAction {
    None,
    /// Propose `UnfenceBroker` (then the elections it allows).
    Unfence,
    /// Propose `FenceBroker` (then the elections it calls for): the broker asked to be
    /// fenced or to shut down.
    Fence,
}

/// The manager's decision on one accepted heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatDecision {
    /// The broker has applied the metadata up to its own registration.
    pub caught_up: bool,
    pub action: HeartbeatAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    epoch: i64,
    /// The incarnation that registered, when this controller saw the registration.
    incarnation: Option<[u8; 16]>,
    /// The broker is caught up once its metadata offset reaches this.
    caught_up_offset: u64,
    last_contact_ms: u64,
    /// When the transport reported the heartbeat connection broken, if no heartbeat came
    /// since, and whether the broker was then confirmed down.
    lost: Option<Loss>,
    /// As committed (or as the caller reported after committing).
    fenced: bool,
    shutting_down: bool,
    /// A new incarnation may register over this session while it is live: the session
    /// of the active controller's own broker from before this controller became active
    /// (combined mode), which can only be an earlier process of this very node.
    replaceable: bool,
}

/// A broken heartbeat connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loss {
    at_ms: u64,
    /// Nothing listens on the broker's endpoints: no grace is due.
    confirmed_down: bool,
}

impl Loss {
    fn at(at_ms: u64) -> Self {
        Self {
            at_ms,
            confirmed_down: false,
        }
    }
}

/// Broker sessions as the active controller tracks them.
#[derive(Debug, Clone)]
pub struct BrokerHeartbeatManager {
    config: HeartbeatConfig,
    sessions: BTreeMap<i32, Session>,
}

impl BrokerHeartbeatManager {
    pub fn new(config: HeartbeatConfig) -> Self {
        Self {
            config,
            sessions: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> HeartbeatConfig {
        self.config
    }

    /// This controller became active. `registered` is every broker in the image as
    /// `(id, epoch, fenced)`, `caught_up_offset` the metadata offset a broker must reach
    /// to be unfenced (the registration offsets of the old term are unknown here, so the
    /// applied offset at activation stands in), and `previous_leader` the broker that was
    /// the previous active controller, if any (combined mode: same id). `own` is the
    /// broker id of this controller's node: a registration of it that this controller
    /// did not see came from an earlier process of this node, so its restarted broker
    /// need not wait a session timeout to register again.
    pub fn became_active(
        &mut self,
        now: u64,
        registered: impl IntoIterator<Item = (i32, i64, bool)>,
        caught_up_offset: u64,
        previous_leader: Option<i32>,
        own: Option<i32>,
    ) {
        self.sessions = registered
            .into_iter()
            .map(|(id, epoch, fenced)| {
                let session = Session {
                    epoch,
                    incarnation: None,
                    caught_up_offset,
                    last_contact_ms: now,
                    lost: None,
                    fenced,
                    shutting_down: false,
                    replaceable: Some(id) == own,
                };
                (id, session)
            })
            .collect();
        if let Some(session) = previous_leader.and_then(|id| self.sessions.get_mut(&id)) {
            // Its heartbeats went to itself as controller: none may ever reach us.
            session.lost = Some(Loss::at(now));
        }
    }

    /// Checks a registration before it is proposed: `Ok(Some(epoch))` when this same
    /// incarnation is already registered (a retry: answer with its epoch, write nothing),
    /// `Ok(None)` when a new registration must be written.
    pub fn check_registration(
        &self,
        broker: i32,
        incarnation: [u8; 16],
        now: u64,
    ) -> Result<Option<i64>, SessionError> {
        let Some(session) = self.sessions.get(&broker) else {
            return Ok(None);
        };
        match session.incarnation {
            Some(known) if known == incarnation => Ok(Some(session.epoch)),
            _ if session.replaceable => Ok(None),
            // As Kafka: a different process may not take over an id whose session is
            // live (two brokers configured with one id), only one that lapsed or fenced.
            _ if !session.fenced && !self.lapsed(session, now) => {
                Err(SessionError::DuplicateRegistration(broker))
            }
            _ => Ok(None),
        }
    }

    /// A registration was committed at `offset`: a new session, fenced, starting now.
    pub fn registered(
        &mut self,
        broker: i32,
        epoch: i64,
        incarnation: [u8; 16],
        offset: u64,
        now: u64,
    ) {
        self.sessions.insert(
            broker,
            Session {
                epoch,
                incarnation: Some(incarnation),
                caught_up_offset: offset,
                last_contact_ms: now,
                lost: None,
                fenced: true,
                shutting_down: false,
                replaceable: false,
            },
        );
    }

    /// Accepts a heartbeat: renews the session and decides what it asks for.
    pub fn heartbeat(
        &mut self,
        heartbeat: &Heartbeat,
        now: u64,
    ) -> Result<HeartbeatDecision, SessionError> {
        let session = self
            .sessions
            .get_mut(&heartbeat.broker)
            .ok_or(SessionError::UnknownBroker(heartbeat.broker))?;
        if heartbeat.epoch != session.epoch {
            return Err(SessionError::StaleBrokerEpoch {
                id: heartbeat.broker,
                got: heartbeat.epoch,
                current: session.epoch,
            });
        }
        session.last_contact_ms = session.last_contact_ms.max(now);
        session.lost = None;
        if heartbeat.want_shutdown {
            session.shutting_down = true;
        }
        let caught_up = heartbeat.metadata_offset >= session.caught_up_offset;
        let action = if session.shutting_down || heartbeat.want_fence {
            if session.fenced {
                HeartbeatAction::None
            } else {
                HeartbeatAction::Fence
            }
        } else if session.fenced && caught_up {
            HeartbeatAction::Unfence
        } else {
            HeartbeatAction::None
        };
        Ok(HeartbeatDecision { caught_up, action })
    }

    /// The transport saw the broker's heartbeat connection break at `now`.
    pub fn connection_lost(&mut self, broker: i32, now: u64) {
        if let Some(session) = self.sessions.get_mut(&broker) {
            // A heartbeat that raced ahead of the report (a reconnect) wins.
            if session.last_contact_ms <= now && session.lost.is_none() {
                session.lost = Some(Loss::at(now));
            }
        }
    }

    /// When `broker`'s heartbeat connection was reported lost, if no heartbeat came since.
    pub fn lost_at(&self, broker: i32) -> Option<u64> {
        self.sessions.get(&broker)?.lost.map(|l| l.at_ms)
    }

    /// The broker whose connection was lost at `lost_at` is known to be down (nothing
    /// listens on its endpoints): it is due for fencing at once rather than after the
    /// grace. A heartbeat since the loss (which clears it) wins, as does a later loss.
    pub fn confirmed_down(&mut self, broker: i32, lost_at: u64) {
        if let Some(session) = self.sessions.get_mut(&broker) {
            if let Some(loss) = session.lost.as_mut().filter(|l| l.at_ms == lost_at) {
                loss.confirmed_down = true;
            }
        }
    }

    /// Takes `broker`'s registration from the image when the session here disagrees
    /// with it (a record refused as stale): the session then follows the image, starting
    /// at `now`, instead of asking again and again for a fence the image refuses.
    pub fn resync(
        &mut self,
        broker: i32,
        registered: Option<(i64, bool)>,
        caught_up_offset: u64,
        now: u64,
    ) {
        match registered {
            None => {
                self.sessions.remove(&broker);
            }
            Some((epoch, fenced)) => {
                let current = self.sessions.get(&broker).map(|s| (s.epoch, s.fenced));
                if current != Some((epoch, fenced)) {
                    self.sessions.insert(
                        broker,
                        Session {
                            epoch,
                            incarnation: None,
                            caught_up_offset,
                            last_contact_ms: now,
                            lost: None,
                            fenced,
                            shutting_down: false,
                            replaceable: false,
                        },
                    );
                }
            }
        }
    }

    /// A fence or unfence of `broker` at `epoch` was committed.
    pub fn set_fenced(&mut self, broker: i32, epoch: i64, fenced: bool) {
        if let Some(session) = self.sessions.get_mut(&broker) {
            if session.epoch == epoch {
                session.fenced = fenced;
            }
        }
    }

    /// The unfenced brokers `(id, epoch)` that must be fenced now. They stay due (and are
    /// returned again) until [`Self::set_fenced`] reports the fence committed.
    pub fn tick(&self, now: u64) -> Vec<(i32, i64)> {
        self.sessions
            .iter()
            .filter(|(_, s)| !s.fenced && self.lapsed(s, now))
            .map(|(id, s)| (*id, s.epoch))
            .collect()
    }

    /// Whether `broker` is tracked and fenced here.
    pub fn is_fenced(&self, broker: i32) -> Option<bool> {
        self.sessions.get(&broker).map(|s| s.fenced)
    }

    fn lapsed(&self, session: &Session, now: u64) -> bool {
        let timed_out = now
            >= session
                .last_contact_ms
                .saturating_add(self.config.session_timeout_ms);
        let lost = session.lost.is_some_and(|loss| {
            loss.confirmed_down || now >= loss.at_ms.saturating_add(self.config.loss_grace_ms)
        });
        timed_out || lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: u64 = 1000;
    const GRACE: u64 = 100;
    const B: i32 = 7;
    const INC: [u8; 16] = [1; 16];

    #[derive(Debug, Clone, Copy)]
    enum Event {
        Heartbeat,
        Lost,
        /// Becomes active again with this previous leader.
        Active(Option<i32>),
        Fenced,
        /// A probe confirmed the loss reported at this time.
        Down(u64),
    }

    /// (name, events at times, tick time, fenced at the tick?)
    type TimingCase = (&'static str, &'static [(u64, Event)], u64, bool);

    /// A manager where broker `B` (epoch 1) registered at 0 and was unfenced.
    fn live() -> BrokerHeartbeatManager {
        let mut m = BrokerHeartbeatManager::new(HeartbeatConfig {
            session_timeout_ms: SESSION,
            loss_grace_ms: GRACE,
        });
        m.registered(B, 1, INC, 0, 0);
        m.set_fenced(B, 1, false);
        m
    }

    fn hb(epoch: i64) -> Heartbeat {
        Heartbeat {
            broker: B,
            epoch,
            metadata_offset: 10,
            want_fence: false,
            want_shutdown: false,
        }
    }

    #[test]
    fn sessions_lapse_by_the_timing_rules() {
        let cases: &[TimingCase] = &[
            ("fresh session", &[], SESSION - 1, false),
            ("session lapses", &[], SESSION, true),
            (
                "paused for half the session",
                &[(500, Event::Heartbeat)],
                1499,
                false,
            ),
            ("heartbeat renews", &[(900, Event::Heartbeat)], 1899, false),
            (
                "renewed session lapses",
                &[(900, Event::Heartbeat)],
                1900,
                true,
            ),
            (
                "lost connection: within grace",
                &[(200, Event::Lost)],
                200 + GRACE - 1,
                false,
            ),
            (
                "lost connection: after grace",
                &[(200, Event::Lost)],
                200 + GRACE,
                true,
            ),
            (
                "lost connection, then reconnect",
                &[(200, Event::Lost), (250, Event::Heartbeat)],
                400,
                false,
            ),
            (
                "a second loss report does not push the deadline",
                &[(200, Event::Lost), (250, Event::Lost)],
                200 + GRACE,
                true,
            ),
            (
                "leader change alone fences nobody",
                &[(900, Event::Active(None))],
                1899,
                false,
            ),
            (
                "leader change restarts a lapsed-looking session",
                &[(5000, Event::Active(Some(3)))],
                5000 + SESSION - 1,
                false,
            ),
            (
                "after a leader change the session still lapses",
                &[(900, Event::Active(None))],
                1900,
                true,
            ),
            (
                "previous controller is fenced after the grace",
                &[(900, Event::Active(Some(B)))],
                900 + GRACE,
                true,
            ),
            (
                "previous controller within the grace",
                &[(900, Event::Active(Some(B)))],
                900 + GRACE - 1,
                false,
            ),
            (
                "previous controller that heartbeats us is kept",
                &[(900, Event::Active(Some(B))), (950, Event::Heartbeat)],
                1500,
                false,
            ),
            ("already fenced", &[(10, Event::Fenced)], 5000, false),
            (
                "lost and confirmed down: no grace",
                &[(200, Event::Lost), (210, Event::Down(200))],
                210,
                true,
            ),
            (
                "confirmed down, but it heartbeat since",
                &[
                    (200, Event::Lost),
                    (205, Event::Heartbeat),
                    (210, Event::Down(200)),
                ],
                210,
                false,
            ),
            (
                "a probe of an earlier loss does not confirm a later one",
                &[
                    (200, Event::Lost),
                    (205, Event::Heartbeat),
                    (250, Event::Lost),
                    (260, Event::Down(200)),
                ],
                260,
                false,
            ),
        ];
        for (name, events, at, fenced) in cases {
            let mut m = live();
            for (t, event) in *events {
                match event {
                    Event::Heartbeat => {
                        m.heartbeat(&hb(1), *t).unwrap();
                    }
                    Event::Lost => m.connection_lost(B, *t),
                    Event::Down(lost_at) => m.confirmed_down(B, *lost_at),
                    Event::Active(previous) => {
                        m.became_active(*t, [(B, 1, false)], 0, *previous, None)
                    }
                    Event::Fenced => m.set_fenced(B, 1, true),
                }
            }
            let due = m.tick(*at);
            let expected = if *fenced { vec![(B, 1)] } else { Vec::new() };
            assert_eq!(due, expected, "{name}");
        }
    }

    #[test]
    fn a_due_fence_stays_due_until_committed() {
        let mut m = live();
        assert_eq!(m.tick(SESSION), [(B, 1)]);
        assert_eq!(m.tick(SESSION + 50), [(B, 1)]);
        m.set_fenced(B, 1, true);
        assert!(m.tick(SESSION + 100).is_empty());
        // A stale report is ignored.
        m.set_fenced(B, 0, false);
        assert_eq!(m.is_fenced(B), Some(true));
    }

    #[test]
    fn heartbeats_are_checked_and_decided() {
        let decision = |caught_up, action| Ok(HeartbeatDecision { caught_up, action });
        // (registered fenced?, heartbeat, expected)
        let with = |f: fn(&mut Heartbeat)| {
            let mut h = hb(1);
            f(&mut h);
            h
        };
        let cases: Vec<(
            &str,
            bool,
            Heartbeat,
            Result<HeartbeatDecision, SessionError>,
        )> = vec![
            (
                "caught up, fenced",
                true,
                hb(1),
                decision(true, HeartbeatAction::Unfence),
            ),
            (
                "not caught up",
                true,
                with(|h| h.metadata_offset = 4),
                decision(false, HeartbeatAction::None),
            ),
            (
                "wants to stay fenced",
                true,
                with(|h| h.want_fence = true),
                decision(true, HeartbeatAction::None),
            ),
            (
                "unfenced",
                false,
                hb(1),
                decision(true, HeartbeatAction::None),
            ),
            (
                "wants fence",
                false,
                with(|h| h.want_fence = true),
                decision(true, HeartbeatAction::Fence),
            ),
            (
                "controlled shutdown",
                false,
                with(|h| h.want_shutdown = true),
                decision(true, HeartbeatAction::Fence),
            ),
            (
                "controlled shutdown, already fenced",
                true,
                with(|h| h.want_shutdown = true),
                decision(true, HeartbeatAction::None),
            ),
            (
                "stale epoch",
                false,
                hb(0),
                Err(SessionError::StaleBrokerEpoch {
                    id: B,
                    got: 0,
                    current: 1,
                }),
            ),
            (
                "unknown broker",
                false,
                with(|h| h.broker = 99),
                Err(SessionError::UnknownBroker(99)),
            ),
        ];
        for (name, fenced, heartbeat, expected) in cases {
            let mut m = BrokerHeartbeatManager::new(HeartbeatConfig::default());
            m.registered(B, 1, INC, 5, 0);
            m.set_fenced(B, 1, fenced);
            assert_eq!(m.heartbeat(&heartbeat, 10), expected, "{name}");
        }
    }

    #[test]
    fn a_session_refused_by_the_image_follows_it() {
        let mut m = live();
        assert_eq!(m.tick(SESSION), [(B, 1)]);
        // The image holds a newer registration: the session follows it from now.
        m.resync(B, Some((2, false)), 0, SESSION);
        assert!(m.tick(SESSION).is_empty());
        assert_eq!(m.tick(2 * SESSION), [(B, 2)]);
        m.resync(B, None, 0, 2 * SESSION);
        assert!(m.tick(3 * SESSION).is_empty());
        assert_eq!(m.is_fenced(B), None);
    }

    #[test]
    fn a_broker_that_asked_to_shut_down_is_not_unfenced() {
        let mut m = live();
        let mut h = hb(1);
        h.want_shutdown = true;
        assert_eq!(
            m.heartbeat(&h, 1).map(|d| d.action),
            Ok(HeartbeatAction::Fence)
        );
        m.set_fenced(B, 1, true);
        assert_eq!(
            m.heartbeat(&hb(1), 2).map(|d| d.action),
            Ok(HeartbeatAction::None)
        );
    }

    #[test]
    fn registrations_are_checked() {
        let mut m = live();
        // The same incarnation retrying gets its epoch back.
        assert_eq!(m.check_registration(B, INC, 10), Ok(Some(1)));
        // Another incarnation while the session is live is a duplicate...
        assert_eq!(
            m.check_registration(B, [2; 16], 10),
            Err(SessionError::DuplicateRegistration(B))
        );
        // ...but may take over once the session lapsed, or the broker is fenced.
        assert_eq!(m.check_registration(B, [2; 16], SESSION), Ok(None));
        m.set_fenced(B, 1, true);
        assert_eq!(m.check_registration(B, [2; 16], 10), Ok(None));
        assert_eq!(m.check_registration(8, INC, 10), Ok(None));
        // A new registration starts fenced, with a new epoch.
        m.registered(B, 2, [2; 16], 20, 30);
        assert_eq!(m.is_fenced(B), Some(true));
        assert_eq!(
            m.heartbeat(&hb(1), 31),
            Err(SessionError::StaleBrokerEpoch {
                id: B,
                got: 1,
                current: 2
            })
        );
        // Caught up only once it has applied its own registration.
        assert_eq!(m.heartbeat(&hb(2), 32).map(|d| d.caught_up), Ok(false));
    }
}
