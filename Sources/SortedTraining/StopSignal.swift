// StopSignal: SIGINT, SIGTERM or SIGUSR1 ask the run to finish its current step, save and
// exit; a second signal exits at once. Under mpirun prefer SIGUSR1: mpirun forwards it to
// the ranks as is, while on SIGTERM it follows up with SIGKILL after a short grace.
import Foundation

public enum StopSignal {
    nonisolated(unsafe) private static var received: Int32 = 0

    public static func install() {
        for sig in [SIGINT, SIGTERM, SIGUSR1] {
            signal(sig) { number in
                StopSignal.received += 1
                if StopSignal.received > 1 { _exit(128 + number) }
            }
        }
    }

    public static var requested: Bool { received > 0 }
}
