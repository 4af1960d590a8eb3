import RegistryMirrorCore
import Testing

@Suite("Planning file actions")
struct HostsPlanTests {
    let content = HostsFile.marker + "\nserver = \"https://registry-1.docker.io\"\n\n[host.\"http://10.0.0.1:5000\"]\n"
    let older = HostsFile.marker + "\nserver = \"https://registry-1.docker.io\"\n\n[host.\"http://10.0.0.2:5000\"]\n"
    let ours = OwnershipRecord(createdDirectory: false)
    let created = OwnershipRecord(createdDirectory: true)
    let oursBackedUp = OwnershipRecord(createdDirectory: false, madeBackup: true)
    let createdBackedUp = OwnershipRecord(createdDirectory: true, madeBackup: true)

    func plan(_ desired: String?, configured: Bool = true, _ observed: UpstreamDirState) throws(PlanConflict) -> [FileAction] {
        try HostsPlan.actions(upstream: "docker.io", desired: desired, configured: configured, observed: observed)
    }

    // MARK: writing

    @Test("absent directory: create it holding its record (one step), write") func absentDirectory() throws {
        #expect(try plan(content, .absent) == [.createDirectory(created), .write(content)])
    }

    @Test("existing directory without a record: record it as not created, write") func existingDirectory() throws {
        #expect(try plan(content, UpstreamDirState(directory: .directory)) == [.writeRecord(ours), .write(content)])
    }

    @Test("existing directory with a record and no file: write only") func recordNoFile() throws {
        #expect(try plan(content, UpstreamDirState(directory: .directory, record: created)) == [.write(content)])
    }

    @Test("managed file with the same content: nothing to do") func unchanged() throws {
        #expect(try plan(content, UpstreamDirState(directory: .directory, file: .managed(content), record: ours)) == [])
    }

    @Test("managed file with other content: rewrite") func changed() throws {
        #expect(try plan(content, UpstreamDirState(directory: .directory, file: .managed(older), record: ours)) == [.write(content)])
    }

    @Test("foreign file: record that we back it up, back it up, then write") func foreign() throws {
        let steps = try plan(content, UpstreamDirState(directory: .directory, file: .foreign))
        #expect(steps == [.writeRecord(oursBackedUp), .backUpForeign, .write(content)])
        let withRecord = try plan(content, UpstreamDirState(directory: .directory, file: .foreign, record: created))
        #expect(withRecord == [.writeRecord(createdBackedUp), .backUpForeign, .write(content)])
        // A crash after the record and before the rename: the next run just renames.
        let recorded = try plan(content, UpstreamDirState(directory: .directory, file: .foreign, record: oursBackedUp))
        #expect(recorded == [.backUpForeign, .write(content)])
    }

    @Test("foreign file while a backup exists: conflict") func foreignWithBackup() {
        let observed = UpstreamDirState(directory: .directory, file: .foreign, backupExists: true, record: ours)
        #expect {
            try plan(content, observed)
        } throws: { error in
            guard let conflict = error as? PlanConflict else { return false }
            return conflict.upstream == "docker.io" && conflict.message.contains("hosts.toml.orig")
        }
    }

    @Test("managed file with a backup beside it: just rewrite") func managedWithBackup() throws {
        let observed = UpstreamDirState(directory: .directory, file: .managed(older), backupExists: true, record: ours)
        #expect(try plan(content, observed) == [.write(content)])
    }

    @Test("symlinked or non-directory upstream path: conflict", arguments: [true, false])
    func notDirectory(hasRecord: Bool) {
        let observed = UpstreamDirState(directory: .notDirectory, record: hasRecord ? ours : nil)
        #expect(throws: PlanConflict.self) { try plan(content, observed) }
        #expect(throws: Never.self) { try plan(nil, configured: false, observed) }
        #expect((try? plan(nil, configured: false, observed)) == [])
    }

    @Test("hosts.toml not a regular file: conflict") func notRegular() throws {
        let observed = UpstreamDirState(directory: .directory, file: .notRegular, record: ours)
        #expect(throws: PlanConflict.self) { try plan(content, observed) }
        #expect(try plan(nil, configured: false, observed) == [.removeRecord])
    }

    // MARK: removing

    @Test("no host up, still configured: remove our file, keep backup and record") func removeConfigured() throws {
        let observed = UpstreamDirState(directory: .directory, file: .managed(content), backupExists: true, record: created)
        #expect(try plan(nil, configured: true, observed) == [.removeManaged])
    }

    @Test("no file wanted, nothing there, still configured: nothing") func removeConfiguredNothing() throws {
        let observed = UpstreamDirState(directory: .directory, backupExists: true, record: ours)
        #expect(try plan(nil, configured: true, observed) == [])
    }

    @Test("upstream gone from the config: remove, restore, forget, remove the directory we made") func removeAll() throws {
        let createdDir = UpstreamDirState(directory: .directory, file: .managed(content), record: created)
        #expect(try plan(nil, configured: false, createdDir) == [.removeManaged, .removeRecord, .removeDirectory])

        let withBackup = UpstreamDirState(directory: .directory, file: .managed(content), backupExists: true, record: oursBackedUp)
        #expect(try plan(nil, configured: false, withBackup) == [.removeManaged, .restoreBackup, .removeRecord])

        let everything = UpstreamDirState(
            directory: .directory, file: .managed(content), backupExists: true, record: createdBackedUp)
        #expect(
            try plan(nil, configured: false, everything) == [.removeManaged, .restoreBackup, .removeRecord, .removeDirectory])
    }

    @Test("file already gone, upstream gone: restore and clean up") func removeAfterFileGone() throws {
        let observed = UpstreamDirState(directory: .directory, backupExists: true, record: oursBackedUp)
        #expect(try plan(nil, configured: false, observed) == [.restoreBackup, .removeRecord])
    }

    @Test(
        "an administrator's own hosts.toml.orig is never restored (the record does not say we made it)",
        arguments: [OwnershipRecord(createdDirectory: false), OwnershipRecord(createdDirectory: true)])
    func adminBackupKept(record: OwnershipRecord) throws {
        let observed = UpstreamDirState(directory: .directory, file: .managed(content), backupExists: true, record: record)
        let steps = try plan(nil, configured: false, observed)
        #expect(!steps.contains(.restoreBackup))
        #expect(steps.first == .removeManaged)
    }

    @Test("a hosts.toml.orig that is a symlink is never restored, even when the record says we made a backup")
    func symlinkBackupKept() throws {
        let observed = UpstreamDirState(
            directory: .directory, file: .managed(content), backupExists: true, backupIsRegularFile: false, record: oursBackedUp)
        #expect(try plan(nil, configured: false, observed) == [.removeManaged, .removeRecord])
    }

    @Test("a record of the previous version (no made_backup line) reads as: no backup made")
    func oldRecord() {
        let record = OwnershipRecord(parsing: "# written by configure-containerd-registries; do not edit\ncreated_directory = true\n")
        #expect(record == OwnershipRecord(createdDirectory: true, madeBackup: false))
    }

    @Test("managed file without a record is still ours to remove") func managedNoRecord() throws {
        let observed = UpstreamDirState(directory: .directory, file: .managed(content))
        #expect(try plan(nil, configured: false, observed) == [.removeManaged])
    }

    @Test("a foreign file is never touched when no file is wanted", arguments: [true, false])
    func foreignKept(configured: Bool) throws {
        for record in [nil, ours, created] as [OwnershipRecord?] {
            for backup in [false, true] {
                let observed = UpstreamDirState(directory: .directory, file: .foreign, backupExists: backup, record: record)
                let steps = try plan(nil, configured: configured, observed)
                #expect(!steps.contains(.removeManaged))
                #expect(!steps.contains(.restoreBackup))
                #expect(!steps.contains(.backUpForeign))
                #expect(!steps.contains { if case .write = $0 { true } else { false } })
            }
        }
    }

    @Test("a directory that is not ours is left alone") func notOurs() throws {
        for file in [UpstreamDirState.File.absent, .foreign] {
            for backup in [false, true] {
                let observed = UpstreamDirState(directory: .directory, file: file, backupExists: backup)
                #expect(!observed.isOurs)
                #expect(try plan(nil, configured: false, observed) == [])
                #expect(try plan(nil, configured: true, observed) == [])
            }
        }
        #expect(try plan(nil, configured: false, .absent) == [])
    }

    @Test("isOurs") func isOurs() {
        #expect(UpstreamDirState(directory: .directory, record: ours).isOurs)
        #expect(UpstreamDirState(directory: .directory, file: .managed("x")).isOurs)
        #expect(!UpstreamDirState(directory: .directory, file: .foreign).isOurs)
        #expect(!UpstreamDirState.absent.isOurs)
    }

    @Test("ownership record round trip", arguments: [true, false], [true, false])
    func record(createdDirectory: Bool, madeBackup: Bool) {
        let record = OwnershipRecord(createdDirectory: createdDirectory, madeBackup: madeBackup)
        #expect(OwnershipRecord(parsing: record.serialized) == record)
        #expect(record.serialized.contains("created_directory = \(createdDirectory)"))
    }
}
