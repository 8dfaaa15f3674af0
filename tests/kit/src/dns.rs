//! A tiny authoritative DNS server for tests, on a loopback port (UDP and TCP): it answers A
//! and AAAA queries from a table the test programs, with TTL 0 so no resolver may cache an
//! answer, and counts the queries per name. A name may have a sequence of answers, the n-th
//! lookup getting the n-th (the last repeats): "a public address first, loopback next" is how
//! a DNS-rebinding attacker answers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// The server; it stops when dropped.
pub struct DnsServer {
    /// Where it listens, on UDP and TCP alike.
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct Zone {
    /// Lower-case name without the final dot → its answer sets, in lookup order.
    answers: HashMap<String, Vec<Vec<IpAddr>>>,
    /// Queries seen per (name, record type); the count picks the answer set.
    queries: HashMap<(String, RecordType), usize>,
}

impl Zone {
    fn answer(&mut self, name: &str, kind: RecordType) -> Option<Vec<IpAddr>> {
        let seen = self.queries.entry((name.to_owned(), kind)).or_default();
        let nth = *seen;
        *seen += 1;
        let sets = self.answers.get(name)?;
        let set = sets.get(nth).or(sets.last())?;
        Some(
            set.iter()
                .copied()
                .filter(|ip| match kind {
                    RecordType::A => ip.is_ipv4(),
                    RecordType::AAAA => ip.is_ipv6(),
                    _ => false,
                })
                .collect(),
        )
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// A server on 127.0.0.1 and a free port, answering NXDOMAIN for every name until told
    /// otherwise.
    pub async fn start() -> DnsServer {
        // The same port for UDP and TCP: take a UDP port, then its TCP twin (retrying when
        // the twin is taken).
        for _ in 0..50 {
            let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("a UDP port");
            let addr = udp.local_addr().expect("a bound address");
            let Ok(tcp) = TcpListener::bind(addr).await else {
                continue;
            };
            let zone = Arc::new(Mutex::new(Zone::default()));
            let tasks = vec![
                tokio::spawn(serve_udp(udp, zone.clone())),
                tokio::spawn(serve_tcp(tcp, zone.clone())),
            ];
            return DnsServer { addr, zone, tasks };
        }
        panic!("no UDP port whose TCP twin was free");
    }

    /// `name` answers `addresses` (A for the IPv4 ones, AAAA for the IPv6 ones) every time.
    pub fn set(&self, name: &str, addresses: &[IpAddr]) {
        self.sequence(name, vec![addresses.to_vec()]);
    }

    /// From now on, `name`'s n-th lookup (counted per record type) answers `answers[n]`;
    /// once they are used up, the last one repeats. Programming a name starts its count over.
    pub fn sequence(&self, name: &str, answers: Vec<Vec<IpAddr>>) {
        assert!(!answers.is_empty(), "a sequence needs at least one answer");
        let name = key(name);
        let mut zone = self.zone.lock().unwrap();
        zone.queries.retain(|(queried, _), _| *queried != name);
        zone.answers.insert(name, answers);
    }

    /// How many A queries `name` got since it was programmed (each lookup of a resolver asking for both families sends
    /// one A and one AAAA query).
    pub fn lookups(&self, name: &str) -> usize {
        let zone = self.zone.lock().unwrap();
        zone.queries
            .get(&(key(name), RecordType::A))
            .copied()
            .unwrap_or(0)
    }

    /// Queries of every name and type so far.
    pub fn total_queries(&self) -> usize {
        self.zone.lock().unwrap().queries.values().sum()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The answer to one query message, or `None` for bytes that are not a query.
fn respond(zone: &Mutex<Zone>, request: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    if request.message_type() != MessageType::Query {
        return None;
    }
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_authoritative(true)
        .set_recursion_desired(request.recursion_desired());
    let mut code = ResponseCode::NoError;
    for query in request.queries() {
        response.add_query(query.clone());
        let name = key(&query.name().to_ascii());
        let found = zone.lock().unwrap().answer(&name, query.query_type());
        match found {
            None => code = ResponseCode::NXDomain,
            Some(addresses) => {
                for ip in addresses {
                    let rdata = match ip {
                        IpAddr::V4(v4) => RData::A(A(v4)),
                        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                    };
                    response.add_answer(Record::from_rdata(query.name().clone(), 0, rdata));
                }
            }
        }
    }
    response.set_response_code(code);
    response.to_vec().ok()
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        if let Some(answer) = respond(&zone, &buffer[..len]) {
            let _ = socket.send_to(&answer, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Mutex<Zone>>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let zone = zone.clone();
        tokio::spawn(async move {
            // Each message is preceded by its length, two bytes big-endian (RFC 1035 4.2.2).
            loop {
                let Ok(len) = stream.read_u16().await else {
                    return;
                };
                let mut message = vec![0u8; usize::from(len)];
                if stream.read_exact(&mut message).await.is_err() {
                    return;
                }
                let Some(answer) = respond(&zone, &message) else {
                    return;
                };
                let Ok(len) = u16::try_from(answer.len()) else {
                    return;
                };
                if stream.write_u16(len).await.is_err() || stream.write_all(&answer).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        use hickory_proto::op::Query;
        use hickory_proto::rr::Name;
        let mut message = Message::new();
        message
            .set_id(7)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message.to_vec().unwrap()
    }

    fn answers(reply: &[u8]) -> (ResponseCode, Vec<IpAddr>) {
        let message = Message::from_vec(reply).unwrap();
        assert_eq!(message.id(), 7);
        let ips = message
            .answers()
            .iter()
            .filter_map(|record| match record.data() {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect();
        (message.response_code(), ips)
    }

    #[tokio::test]
    async fn sequences_answer_in_lookup_order_and_the_last_repeats() {
        let server = DnsServer::start().await;
        let public: IpAddr = "198.51.100.7".parse().unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        server.sequence("Rebind.Test", vec![vec![public], vec![loopback, v6]]);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buffer = [0u8; 512];
        let ask = |name: &'static str, kind| {
            let socket = &socket;
            let addr = server.addr;
            async move {
                socket.send_to(&query(name, kind), addr).await.unwrap();
                let mut buffer = [0u8; 512];
                let len = socket.recv(&mut buffer).await.unwrap();
                answers(&buffer[..len])
            }
        };
        let first = ask("rebind.test.", RecordType::A).await;
        assert_eq!(first, (ResponseCode::NoError, vec![public]));
        let second = ask("rebind.test.", RecordType::A).await;
        assert_eq!(second, (ResponseCode::NoError, vec![loopback]));
        let third = ask("REBIND.test.", RecordType::A).await;
        assert_eq!(third, (ResponseCode::NoError, vec![loopback]));
        // AAAA is counted on its own: its first lookup gets the first set (no IPv6 there).
        let aaaa = ask("rebind.test.", RecordType::AAAA).await;
        assert_eq!(aaaa, (ResponseCode::NoError, vec![]));
        let unknown = ask("nowhere.test.", RecordType::A).await;
        assert_eq!(unknown, (ResponseCode::NXDomain, vec![]));
        assert_eq!(server.lookups("rebind.test"), 3);

        // The same over TCP.
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let message = query("rebind.test.", RecordType::AAAA);
        stream.write_u16(message.len() as u16).await.unwrap();
        stream.write_all(&message).await.unwrap();
        let len = stream.read_u16().await.unwrap() as usize;
        stream.read_exact(&mut buffer[..len]).await.unwrap();
        assert_eq!(answers(&buffer[..len]), (ResponseCode::NoError, vec![v6]));

        // Programming the name again starts the sequence over.
        server.sequence("rebind.test", vec![vec![public], vec![loopback]]);
        assert_eq!(server.lookups("rebind.test"), 0);
        let again = ask("rebind.test.", RecordType::A).await;
        assert_eq!(again, (ResponseCode::NoError, vec![public]));
    }
}
