import CFuzzerDriver
import RegistryMirrorCore
import RenderCheck
import TOMLKit

/// libFuzzer calls this once per input. Loading arbitrary bytes must never crash; every config the
/// loader accepts must render to hosts.toml files that parse back to exactly what was configured; and
/// the same bytes read as containerd's config must never crash either, and must read as toml++ reads
/// them as written whenever it can (see `containerdReadingProblem`). A broken promise is a fatalError,
/// so libFuzzer saves the input as a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfigLoader(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: size == 0 ? nil : data, count: size)
    if KnownBugs.skipping, KnownBugs.reason(bytes) != nil { return -1 }  // -1: libFuzzer keeps it out of the corpus
    if let problem = containerdReadingProblem(String(decoding: bytes, as: UTF8.self)) {
        fatalError("containerd's config read differently: \(problem)")
    }
    guard let config = try? ConfigLoader.load(bytes: bytes, path: "fuzz.toml") else { return 0 }
    if KnownBugs.skipping, KnownBugs.reason(config) != nil { return -1 }
    let files = renderAll(config)
    let problems = files.flatMap(roundTripProblems)
    if !problems.isEmpty {
        let texts = files.compactMap(\.text).joined(separator: "----\n")
        fatalError("hosts.toml round trip failed: " + problems.joined(separator: "\n") + "\nrendered:\n" + texts)
    }
    return 0
}

/// What is wrong with reading `text` as containerd's config (`ContainerdConfigText`, which blanks
/// comments and anything nested deeper than `TOMLGuard.shallowDepth`), or nil: whenever toml++ parses
/// the text as written, the reading must parse too, with no top-level key the text lacks (a key only
/// ever written too deep is blanked) and the same `version` and CRI registry `config_path` for config
/// versions 1, 2 and 3.
func containerdReadingProblem(_ text: String) -> String? {
    guard let asWritten = try? TOMLGuard.parse(text) else {
        _ = ContainerdConfigCheck.evaluate(toml: text, path: "fuzz-containerd.toml", hostsDir: "/etc/containerd/certs.d")
        return nil
    }
    let read: TOMLTable
    do {
        read = try ContainerdConfigText.parse(text)
    } catch {
        return "toml++ parses it as written, ContainerdConfigText refuses it: \(error)"
    }
    if !Set(read.keys).isSubset(of: asWritten.keys) { return "top-level keys \(read.keys.sorted()) vs \(asWritten.keys.sorted())" }
    if read["version"]?.int != asWritten["version"]?.int { return "version differs" }
    for plugin in ["cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images"] {
        func configPath(_ root: TOMLTable) -> String? {
            root["plugins"]?.table?[plugin]?.table?["registry"]?.table?["config_path"]?.string
        }
        if configPath(read) != configPath(asWritten) { return "\(plugin) config_path differs" }
    }
    return nil
}

/// SwiftPM links an executable on Linux with `main` aliased to `<module>_main`, which would hide
/// libFuzzer's own main; this stands in for it and hands over to libFuzzer's driver. Where SwiftPM
/// does not alias, libFuzzer's main runs and this is never called.
@_cdecl("FuzzConfigLoader_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzConfigLoader)
}
