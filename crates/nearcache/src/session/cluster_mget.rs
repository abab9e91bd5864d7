//! An `MGET` whose keys span several slots, in cluster mode, through the cache: every key is
//! looked up as a one-slot `MGET`'s would be (entries `MGET key`, shared with them); if all hit,
//! the reply is answered at once; otherwise each slot's part fetches only its missing keys,
//! from that slot's node (a replica with `read_from = replica`), on that node's connection,
//! filled under that connection's tracking, and the parts are merged in the client's order.
//!
//! Owns the split `MGET`'s use of the cache. Never follows a redirect itself (a part that meets
//! one is sent again whole by `cluster::send`, and its reply is not cached), never decides a
//! route (`cluster::split` does).

use std::sync::Arc;

use bytes::Bytes;

use super::cached::mget_form;
use super::state::Session;
use crate::cachelayer::{join_array, Read};
use crate::cluster::nodes::Nodes;
use crate::cluster::send::{self, Join, Sent};
use crate::cluster::split::Split;
use crate::obs::stats::{Outcome, StampExt as _};
use crate::reply::{self, After};

impl Session {
    /// A split `MGET` (`args`, planned as `split`) through the cache; hands the split back when
    /// the cache does not take this read (cache off, a user whose reads are not cached, a
    /// write of this session to one of its keys in flight).
    pub(super) async fn cached_split_mget(
        &mut self,
        nodes: &Arc<Nodes>,
        split: Split,
        args: &[Bytes],
    ) -> Option<Split> {
        let cache = match (&self.ctx.cache, self.cache_part()) {
            (Some(c), Some(part)) if !self.output.link.writes.hold_back(&args[1..]) => {
                (c.clone(), part)
            }
            _ => return Some(split),
        };
        let (cache, form) = (cache.0, mget_form(self.proto, cache.1));
        let mut items = Vec::with_capacity(args.len() - 1);
        let mut entries = Vec::with_capacity(args.len() - 1);
        let now = cache.now();
        for key in &args[1..] {
            match cache.read_at(form, &[&b"MGET"[..], &key[..]], &mut self.encode_buf, now) {
                Read::Hit(hit) => {
                    items.push(Some(hit));
                    entries.push(None);
                }
                Read::Miss(entry_key) => {
                    items.push(None);
                    entries.push(Some(entry_key));
                }
            }
        }
        if entries.iter().all(Option::is_none) {
            self.stamp.mark(Outcome::Hit);
            self.output.reply_array(&items);
            return None;
        }
        self.stamp.mark(Outcome::Miss);
        // As any split command: no part may overtake an earlier command of the client's.
        self.output.link.drained().await;
        let mut sent = Vec::with_capacity(split.parts.len());
        for part in &split.parts {
            let bytes = self.encode(&part.args);
            let Some((addr, pool)) = nodes.reader_for_slot(part.slot) else {
                sent.push(Sent::new(
                    self.again_to(nodes, bytes, Some(part.slot), String::new()),
                    None,
                ));
                continue;
            };
            let part_items: Vec<Option<Bytes>> =
                part.places.iter().map(|&p| items[p].clone()).collect();
            let misses: Vec<(usize, Bytes)> = part
                .places
                .iter()
                .enumerate()
                .filter_map(|(n, &p)| entries[p].clone().map(|e| (n, e)))
                .collect();
            let rx = if misses.is_empty() {
                let hits: Vec<Bytes> = part_items.into_iter().flatten().collect();
                let (tx, rx) = reply::reply_channel(None);
                tx.send(Ok(join_array(&hits)));
                rx
            } else {
                let conn = send::shared_as(&pool, self.who.as_deref(), self.proto);
                self.fetch_missing(&cache, &conn, &part.args[1..], part_items, &misses, None)
            };
            let again = self.again_to(nodes, bytes, Some(part.slot), addr);
            sent.push(Sent::new(again, Some(rx)));
        }
        self.queue_parts(sent, Join::Split(split), After::Nothing);
        None
    }
}
