// DisconnectWatcher: tells a request that its client went away. Hummingbird keeps half-closed
// connections open (a client may stop sending and still read), so the connection's close
// comes only after the answer; the end of the client's input is seen here, in the channel
// pipeline, as soon as it arrives — also while a request that is not streamed still runs.
import NIOCore

final class DisconnectWatcher: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    // Reads pass through untouched; only events are watched.
    typealias InboundIn = NIOAny

    // Used on the channel's event loop only.
    private var gone = false
    private var callbacks: [() -> Void] = []

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { clientWent() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientWent()
        context.fireChannelInactive()
    }

    private func clientWent() {
        gone = true
        let pending = callbacks
        callbacks.removeAll()
        for callback in pending { callback() }
    }

    /// Calls `body` (on the event loop) when the client of `channel` goes away, or at once if
    /// it already has.
    static func onDisconnect(of channel: any Channel, _ body: @escaping @Sendable () -> Void) {
        channel.pipeline.handler(type: DisconnectWatcher.self).whenSuccess { watcher in
            if watcher.gone { body() } else { watcher.callbacks.append(body) }
        }
    }
}
