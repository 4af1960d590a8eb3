import CFuzzerDriver
import RegistryMirrorCore
import RenderCheck

/// libFuzzer calls this once per input. Loading arbitrary bytes must never crash; every config the
/// loader accepts must render to hosts.toml files that parse back to exactly what was configured.
/// A broken promise is a fatalError, so libFuzzer saves the input as a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfigLoader(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: size == 0 ? nil : data, count: size)
    if KnownBugs.skipping, KnownBugs.reason(bytes) != nil { return -1 }  // -1: libFuzzer keeps it out of the corpus
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

/// SwiftPM links an executable on Linux with `main` aliased to `<module>_main`, which would hide
/// libFuzzer's own main; this stands in for it and hands over to libFuzzer's driver. Where SwiftPM
/// does not alias, libFuzzer's main runs and this is never called.
@_cdecl("FuzzConfigLoader_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzConfigLoader)
}
