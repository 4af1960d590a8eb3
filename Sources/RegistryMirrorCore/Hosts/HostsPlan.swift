/// What is on disk for one upstream directory under hosts_dir, as far as this agent cares.
public struct UpstreamDirState: Sendable, Equatable {
    public enum Directory: Sendable, Equatable {
        case absent, directory
        /// A symlink, a regular file or anything else: never followed, never touched.
        case notDirectory
    }
    public enum File: Sendable, Equatable {
        case absent
        /// Ours: starts with `HostsFile.marker`.
        case managed(String)
        /// Somebody else's regular file.
        case foreign
        /// A symlink, directory or special file: never followed, never touched.
        case notRegular
    }

    public var directory: Directory
    public var file: File
    /// Something named hosts.toml.orig exists (of any kind): a foreign file cannot be backed up.
    public var backupExists: Bool
    /// hosts.toml.orig is a regular file (not a symlink): only then can it ever be restored.
    public var backupIsRegularFile: Bool
    /// The ownership record this agent leaves in directories it writes to; nil when there is none.
    public var record: OwnershipRecord?
    /// The text of a foreign hosts.toml, when the store read it (for `plan`'s diff); never changed.
    public var foreignContent: String?
    /// A directory containerd looks in before this one, when it exists (`<hosts_dir>/host_port_` for
    /// `host:port`, `HostsFile.shadowingDirectory`; or the upstream's directory in a `config_path`
    /// root listed before hosts_dir): containerd then reads that one and never ours. A full path.
    public var shadowedBy: String?

    public init(
        directory: Directory, file: File = .absent, backupExists: Bool = false, backupIsRegularFile: Bool? = nil,
        record: OwnershipRecord? = nil
    ) {
        self.directory = directory
        self.file = file
        self.backupExists = backupExists
        self.backupIsRegularFile = backupIsRegularFile ?? backupExists
        self.record = record
    }

    public static let absent = UpstreamDirState(directory: .absent)

    /// True when this agent has anything of its own in the directory.
    public var isOurs: Bool {
        if record != nil { return true }
        if case .managed = file { return true }
        return false
    }
}

/// What this agent remembers about a directory it writes to, kept in a small file beside hosts.toml
/// (containerd only reads hosts.toml, or certificate files when hosts.toml is absent).
public struct OwnershipRecord: Sendable, Equatable {
    public static let fileName = ".configure-containerd-registries"
    /// True when the directory did not exist before: `remove` deletes it again once empty.
    public var createdDirectory: Bool
    /// True when this agent renamed a foreign hosts.toml to hosts.toml.orig: only then does it ever
    /// rename hosts.toml.orig back. An administrator's own .orig is never touched.
    public var madeBackup: Bool

    public init(createdDirectory: Bool, madeBackup: Bool = false) {
        self.createdDirectory = createdDirectory
        self.madeBackup = madeBackup
    }

    public var serialized: String {
        "# written by configure-containerd-registries; do not edit\ncreated_directory = \(createdDirectory)\n"
            + "made_backup = \(madeBackup)\n"
    }

    /// Reads `key = true|false` lines; anything else (a record of an older version without
    /// `made_backup`) counts as false, the safe side: nothing is deleted or restored on its word.
    public init(parsing text: String) {
        var values: [Substring: Bool] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces }
            if parts.count == 2 { values[parts[0]] = parts[1] == "true" }
        }
        createdDirectory = values["created_directory"] ?? false
        madeBackup = values["made_backup"] ?? false
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return s
    }
}

/// One step on disk, carried out in order by the hosts store. Every step is atomic on its own and the
/// order is chosen so that a crash between two steps leaves a state the next run can finish from.
public enum FileAction: Sendable, Equatable {
    /// Create the upstream directory already holding this record (made under a temporary name and
    /// renamed into place), so no crash can leave a directory of ours that does not say so.
    case createDirectory(OwnershipRecord)
    case writeRecord(OwnershipRecord)
    /// Rename the foreign hosts.toml to hosts.toml.orig.
    case backUpForeign
    /// Atomically replace hosts.toml with this content.
    case write(String)
    /// Unlink our hosts.toml.
    case removeManaged
    /// Rename hosts.toml.orig back to hosts.toml.
    case restoreBackup
    case removeRecord
    /// Remove the directory if it is empty.
    case removeDirectory
}

/// Why a directory cannot be brought to the wanted state without touching something not ours.
public struct PlanConflict: Error, Sendable, Equatable, CustomStringConvertible {
    public var upstream: String
    public var message: String
    public var description: String { "\(upstream): \(message)" }
}

public enum HostsPlan {
    /// The steps that take `observed` to `desired` content (nil: no file from us).
    ///
    /// - Parameter configured: the upstream is still in the config. When it is and no host is up, our file
    ///   is removed but the backup and the ownership record stay, so a recovering mirror finds things as
    ///   they were; when it is not, everything of ours goes and a backed-up foreign file comes back.
    public static func actions(
        upstream: String, desired: String?, configured: Bool, observed: UpstreamDirState
    ) throws(PlanConflict) -> [FileAction] {
        func conflict(_ message: String) -> PlanConflict { PlanConflict(upstream: upstream, message: message) }

        guard let desired else {
            return removal(configured: configured, observed: observed)
        }
        switch observed.directory {
        case .notDirectory:
            throw conflict("the directory is a symlink or not a directory; refusing to follow it (replace it with a real directory)")
        case .absent:
            return [.createDirectory(OwnershipRecord(createdDirectory: true)), .write(desired)]
        case .directory:
            var steps: [FileAction] = []
            let record = observed.record ?? OwnershipRecord(createdDirectory: false)
            if observed.record == nil, observed.file != .foreign { steps.append(.writeRecord(record)) }
            switch observed.file {
            case .notRegular:
                throw conflict("hosts.toml is a symlink or not a regular file; refusing to replace it (remove it by hand)")
            case .managed(let current) where current == desired:
                return steps
            case .managed, .absent:
                return steps + [.write(desired)]
            case .foreign where observed.backupExists:
                throw conflict(
                    "hosts.toml is not ours and hosts.toml.orig already exists; move one of them away so the foreign file can be backed up")
            case .foreign:
                // The record says so before the rename: a crash in between leaves a record that
                // promises a backup which is not there yet, and the next run makes it.
                var backedUp = record
                backedUp.madeBackup = true
                return (observed.record == backedUp ? [] : [.writeRecord(backedUp)]) + [.backUpForeign, .write(desired)]
            }
        }
    }

    static func removal(configured: Bool, observed: UpstreamDirState) -> [FileAction] {
        guard observed.directory == .directory else { return [] }
        var steps: [FileAction] = []
        var fileGone = observed.file == .absent
        if case .managed = observed.file {
            steps.append(.removeManaged)
            fileGone = true
        }
        guard !configured, observed.isOurs else { return steps }
        if fileGone && observed.backupIsRegularFile && observed.record?.madeBackup == true { steps.append(.restoreBackup) }
        if observed.record != nil { steps.append(.removeRecord) }
        if observed.record?.createdDirectory == true { steps.append(.removeDirectory) }
        return steps
    }
}
