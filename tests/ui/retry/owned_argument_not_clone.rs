use limit_runtime::retry;

struct Connection;

#[retry]
async fn send(id: u64, conn: Connection, by_ref: &Connection) -> Result<(), String> {
    let _ = (id, conn, by_ref);
    Ok(())
}

fn main() {}
