//! An upgraded connection (WebSocket and the like): after the 101, bytes flow both ways
//! untouched until either side closes. Neither side is timed: an idle WebSocket is normal.

use pingora::protocols::Stream;

use super::respond::{to_client, RelayOutcome};
use super::{Conn, Hooks};

impl<H: Hooks> Conn<'_, H> {
    /// Sends the 101 head (in `out`) and what followed it, then joins the two connections.
    /// The client connection ends with the tunnel.
    pub(super) async fn tunnel(&mut self, mut up: Stream) -> (RelayOutcome, bool) {
        let send = Some(self.app.limits.send_timeout);
        let early = [self.response.data()];
        if to_client(
            &mut self.client.stream,
            &mut self.client.timer,
            send,
            &self.out,
            &early,
        )
        .await
        .is_err()
        {
            return (RelayOutcome::ClientAborted, false);
        }
        self.response.consume(self.response.len());
        // Bytes the client sent after its request head belong to the new protocol.
        if !self.client.input.is_empty() {
            let parts = [std::io::IoSlice::new(self.client.input.data())];
            if super::io::write_all(&mut up, &mut self.upstream_timer, None, &mut { parts })
                .await
                .is_err()
            {
                return (RelayOutcome::Relayed, false);
            }
            self.client.input.consume(self.client.input.len());
        }
        let _ = tokio::io::copy_bidirectional(&mut self.client.stream, &mut up).await;
        (RelayOutcome::Relayed, false)
    }
}
