// A test tool, not shipped: follows journal entries with the agent's own reader
// (`ContainerdJournal.Reader`) and prints each containerd event it reads, with the time it read it.
// scripts/systemd/journald-inner.sh runs it against a real journald to prove that no entry is held
// back. Loopback and the journal only.
//
//   journal-follow-check MATCH SECONDS [--spin]
//
// MATCH is a journal match (`SYSLOG_IDENTIFIER=ccr-follow-test`). The default follows as watch does
// (a thread waiting in sd_journal_wait). --spin reads in a tight loop instead, so that reads overlap
// journald's writes as often as they can: the case in which an entry written while a pass ran must
// still be read by the next one. Output, one line per bypass: `<unix seconds> <reason>`; a line
// `ready` once the journal is open.
import Glibc
import RegistryMirrorCore
import RegistryMirrorSystem

func seconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// One line on `fd`, unbuffered: the time a line is printed is the time it was read.
func emit(_ line: String, to fd: Int32 = 1) {
    var bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
}

func report(_ event: ContainerdLog.Event) {
    guard case .bypass(let bypass) = event else { return }
    emit(String(format: "%.6f", seconds()) + " " + bypass.reason)
}

let arguments = CommandLine.arguments
guard arguments.count >= 3, let duration = Double(arguments[2]) else {
    emit("usage: journal-follow-check MATCH SECONDS [--spin]", to: 2)
    exit(64)
}
let match = arguments[1]
let deadline = seconds() + duration

if arguments.dropFirst(3).contains("--spin") {
    switch ContainerdJournal.Reader.open(match: match) {
    case .failure(let error):
        emit("journal-follow-check: \(error.reason)", to: 2)
        exit(1)
    case .success(let reader):
        emit("ready")
        while seconds() < deadline { reader.pass(report) }
        reader.close()
    }
} else {
    switch ContainerdJournal.follow(match: match) {
    case .failure(let error):
        emit("journal-follow-check: \(error.reason)", to: 2)
        exit(1)
    case .success(let events):
        emit("ready")
        let reading = Task {
            for await event in events { report(event) }
        }
        try? await Task.sleep(for: .seconds(max(0, deadline - seconds())))
        reading.cancel()
    }
}
