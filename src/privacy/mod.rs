//! Privacy: where everything naming a person is, so `forget` can erase it, and what is kept
//! how long, so `audit` can check it.
//!
//! Faces are sensitive personal data: a site may keep them only as long as needed and must
//! erase a person on request. Three things name an enrolled person outside the gallery: cached
//! results (`image:<md5>`), track records (a vote, the decided identity, announcements) and
//! events. Each writer notes the key or event id in a per-person index ([`index`]) when it
//! writes something naming the person, so [`forget::forget_everywhere`] finds them without
//! scanning the keyspace. The indexes expire with what they point at.
//!
//! The index is written before the key it names where it can be (cache, tracks), so a crash
//! between the two leaves an index entry pointing at nothing rather than an unindexed key; an
//! event's id is only known after it is appended, so that note comes after. A worker that is
//! finishing a face of the person while `forget` runs may still write one result after it:
//! that result expires with its TTL and no longer answers (the gallery version moved on).

pub mod audit;
pub mod forget;
pub mod index;
