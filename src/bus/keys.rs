//! Key, stream and channel names: the Redis contract in one place.
//!
//! `{...}` in a key is a Redis Cluster hash tag: only the text between the braces is hashed, so
//! every key of one camera group (`{<group>}`) lands in one slot, and so does the whole gallery
//! (`{gallery}`). That keeps multi-key operations on a group (dead-lettering an entry and acking
//! it) or on the gallery (enrol, forget) atomic on one node, with Cluster as with a single server.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Config;

/// The consumer group every recognition worker joins on each faces stream.
pub const CONSUMER_GROUP: &str = "recognizers";

/// Names of everything redeye stores in Redis, derived from `[redis]` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Prefix of every key, stream and channel redeye owns (`redis.key_prefix`).
    prefix: String,
    /// Prefix of the result cache keys (`redis.image_key_prefix`).
    image_prefix: String,
    /// The events channel, also the events stream's key (`redis.event_channel`).
    events_channel: String,
}

impl Keys {
    /// Names from explicit prefixes (tests, tools). `events_channel` is usually
    /// `<prefix>:events`.
    pub fn new(prefix: &str, image_prefix: &str, events_channel: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            image_prefix: image_prefix.to_owned(),
            events_channel: events_channel.to_owned(),
        }
    }

    /// Names from `[redis]`: `key_prefix`, `image_key_prefix`, `event_channel`.
    pub fn from_config(config: &Config) -> Keys {
        Keys::new(&config.redis.key_prefix, &config.redis.image_key_prefix, &config.event_channel())
    }

    /// The key prefix (`redeye` by default).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:{<group>}:faces`: the stream of face crops waiting for recognition.
    pub fn faces(&self, group: &str) -> String {
        format!("{}:{{{group}}}:faces", self.prefix)
    }

    /// `<prefix>:{<group>}:dead`: crops that could not be recognised, with the reason.
    pub fn dead(&self, group: &str) -> String {
        format!("{}:{{{group}}}:dead", self.prefix)
    }

    /// `<prefix>:{<group>}:track:<track_id>`: the record of one face track (a small hash with a
    /// TTL: shots sent and folded, the weighted vote, the decided identity, what was announced).
    /// It shares the faces stream's hash tag, so one script can touch both in a Cluster.
    pub fn track(&self, group: &str, track_id: &str) -> String {
        format!("{}:{{{group}}}:track:{track_id}", self.prefix)
    }

    /// `<prefix>:{<group>}:reply:<id>`: a list where the group's workers push their answers to
    /// one `identify` request (see [`crate::recognize::request`]); a short TTL, and emptied
    /// (so deleted) as the client reads it. It shares the faces stream's hash tag: the request
    /// and its answers live on the group's node.
    pub fn reply(&self, group: &str, request_id: &str) -> String {
        format!("{}:{{{group}}}:reply:{request_id}", self.prefix)
    }

    /// `<image_prefix>:<md5>`: the cached recognition result of one crop (JSON, with a TTL).
    /// The seed article's key; it carries no hash tag, so results spread over a Cluster.
    pub fn image(&self, md5_hex: &str) -> String {
        format!("{}:{md5_hex}", self.image_prefix)
    }

    /// `<prefix>:{gallery}:people`: hash of person id to JSON `{id, name, created, ...}`.
    pub fn people(&self) -> String {
        format!("{}:{{gallery}}:people", self.prefix)
    }

    /// `<prefix>:{gallery}:emb:<id>`: one person's embeddings, packed little-endian f32.
    pub fn embeddings(&self, person_id: &str) -> String {
        format!("{}:{{gallery}}:emb:{person_id}", self.prefix)
    }

    /// `<prefix>:{gallery}:version`: counter bumped by every enrol and forget, so cached
    /// results computed against an older gallery can be recognised as stale.
    pub fn gallery_version(&self) -> String {
        format!("{}:{{gallery}}:version", self.prefix)
    }

    /// `<prefix>:{gallery}:cached:<id>`: set of the `image:<md5>` keys whose cached result names
    /// person `id`, so `forget` finds them without scanning (see [`crate::privacy`]). Kept on
    /// the node that holds those image keys (a group's node with named nodes), with their TTL.
    pub fn person_cached(&self, person_id: &str) -> String {
        format!("{}:{{gallery}}:cached:{person_id}", self.prefix)
    }

    /// `<prefix>:{gallery}:tracks:<id>`: set of the track record keys with a vote for person
    /// `id`, on the node holding those records, with the records' TTL.
    pub fn person_tracks(&self, person_id: &str) -> String {
        format!("{}:{{gallery}}:tracks:{person_id}", self.prefix)
    }

    /// `<prefix>:{gallery}:events:<id>`: set of the events stream ids of events naming person
    /// `id`, on the shared node, with the events' retention as TTL.
    pub fn person_events(&self, person_id: &str) -> String {
        format!("{}:{{gallery}}:events:{person_id}", self.prefix)
    }

    /// `<prefix>:{visitors}:`: the start of every anonymous visitor key. The whole site's
    /// visitors share one hash tag, so one script can check and create a visitor atomically
    /// (see `visitor.lua`); the names after it are owned by [`crate::visitor`].
    pub fn visitors_base(&self) -> String {
        format!("{}:{{visitors}}:", self.prefix)
    }

    /// `<prefix>:{visitors}:v:<id>`: one visitor's record (a hash with a TTL).
    pub fn visitor(&self, id: &str) -> String {
        format!("{}v:{id}", self.visitors_base())
    }

    /// `<prefix>:{visitors}:shot:<id>`: the JPEG of a visitor's best shot (with a TTL).
    pub fn visitor_shot(&self, id: &str) -> String {
        format!("{}shot:{id}", self.visitors_base())
    }

    /// `<prefix>:{visitors}:index`: sorted set of visitor id by last sighting (Unix ms).
    pub fn visitors_index(&self) -> String {
        format!("{}index", self.visitors_base())
    }

    /// `<prefix>:{visitors}:log`: capped stream of visitor changes (`op`, `id`), which keeps
    /// every worker's in-memory index current.
    pub fn visitors_log(&self) -> String {
        format!("{}log", self.visitors_base())
    }

    /// `<prefix>:{visitors}:evicted`: counter of visitors evicted by the cap.
    pub fn visitors_evicted(&self) -> String {
        format!("{}evicted", self.visitors_base())
    }

    /// The pub/sub channel of live recognition events.
    pub fn events_channel(&self) -> &str {
        &self.events_channel
    }

    /// The capped stream of the same events, for subscribers catching up. It shares the
    /// channel's name: channels and keys live in different namespaces.
    pub fn events_stream(&self) -> &str {
        &self.events_channel
    }
}

/// A consumer name unique to this process and call: `<host>-<pid>-<n>`.
///
/// Consumers are never reused across restarts: a restarted worker's old pending entries belong
/// to a dead consumer and are claimed by `XAUTOCLAIM` like any other.
pub fn consumer_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}-{n}", host_name(), std::process::id())
}

/// The host name, read without a libc call; `host` when it cannot be found.
fn host_name() -> String {
    let from_file = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned());
    from_file
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
        // Spaces would make the name awkward in redis-cli; dashes keep it one token.
        .map(|h| h.replace(char::is_whitespace, "-"))
        .unwrap_or_else(|| "host".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let keys = Keys::new("redeye", "image", "redeye:events");
        assert_eq!(keys.faces("lobby"), "redeye:{lobby}:faces");
        assert_eq!(keys.dead("lobby"), "redeye:{lobby}:dead");
        assert_eq!(keys.track("lobby", "door:1700000000000:3"), "redeye:{lobby}:track:door:1700000000000:3");
        assert_eq!(keys.reply("lobby", "r1"), "redeye:{lobby}:reply:r1");
        assert_eq!(keys.image("abc"), "image:abc");
        assert_eq!(keys.people(), "redeye:{gallery}:people");
        assert_eq!(keys.embeddings("p1"), "redeye:{gallery}:emb:p1");
        assert_eq!(keys.gallery_version(), "redeye:{gallery}:version");
        assert_eq!(keys.person_cached("p1"), "redeye:{gallery}:cached:p1");
        assert_eq!(keys.person_tracks("p1"), "redeye:{gallery}:tracks:p1");
        assert_eq!(keys.person_events("p1"), "redeye:{gallery}:events:p1");
        assert_eq!(keys.events_stream(), "redeye:events");
        assert_eq!(keys.visitor("v-abc"), "redeye:{visitors}:v:v-abc");
        assert_eq!(keys.visitor_shot("v-abc"), "redeye:{visitors}:shot:v-abc");
        assert_eq!(keys.visitors_index(), "redeye:{visitors}:index");
        assert_eq!(keys.visitors_log(), "redeye:{visitors}:log");
    }

    #[test]
    fn defaults_from_config() {
        let keys = Keys::from_config(&Config::default());
        assert_eq!(keys, Keys::new("redeye", "image", "redeye:events"));
    }

    #[test]
    fn consumer_names_are_unique() {
        let (a, b) = (consumer_name(), consumer_name());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
    }
}
