//! The batch's input: customers whose groups arrive clustered, the way
//! exports sorted by account or region do.

use super::mix;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Customer {
    pub id: u64,
    /// The customer's group: its settings (a discount here) are shared by
    /// every customer of the group and expensive for the service to produce.
    pub group: u64,
}

/// `count` customers: runs of 1 to 60 consecutive customers share a group,
/// and a group may come back later in another run. One large account (a
/// group 10× the average size) sits in one block, a third of the way in, as
/// real exports often have it.
pub fn customers(count: usize, seed: u64) -> Vec<Customer> {
    let groups = (count as u64 / 40).clamp(5, 500);
    let big = (10 * count / groups as usize).min(count / 3);
    let mut out = Vec::with_capacity(count);
    let big_at = count / 3;
    let mut run = 0;
    while out.len() < count {
        let h = mix(seed, &[0xC0FFEE, run]);
        let group = h % groups;
        let len = 1 + (h >> 32) % 60;
        for _ in 0..len {
            if out.len() == count {
                break;
            }
            if out.len() == big_at {
                // The large account: group number `groups`, all in one block.
                for _ in 0..big.min(count - out.len()) {
                    let id = 10_000 + out.len() as u64;
                    out.push(Customer { id, group: groups });
                }
                if out.len() == count {
                    break;
                }
            }
            let id = 10_000 + out.len() as u64;
            out.push(Customer { id, group });
        }
        run += 1;
    }
    out
}
