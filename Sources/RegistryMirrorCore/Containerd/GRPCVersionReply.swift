/// The VersionResponse in a gRPC reply body: a 5-byte frame header, then protobuf with `version` as
/// field 1 (a string) and `revision` as field 2.
public enum GRPCVersionReply {
    public static func version(in body: [UInt8]) -> String? {
        guard body.count >= 5, body[0] == 0 else { return nil }
        let length = Int(body[1]) << 24 | Int(body[2]) << 16 | Int(body[3]) << 8 | Int(body[4])
        guard length <= body.count - 5 else { return nil }
        var i = 5
        let end = 5 + length
        func varint() -> Int? {
            var value = 0
            var shift = 0
            while i < end && shift < 63 {
                let b = body[i]
                i += 1
                value |= Int(b & 0x7F) << shift
                if b & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while i < end {
            guard let key = varint() else { return nil }
            let field = key >> 3
            switch key & 7 {
            case 0: guard varint() != nil else { return nil }
            case 2:
                guard let n = varint(), n >= 0, n <= end - i else { return nil }
                if field == 1 { return String(decoding: body[i..<(i + n)], as: UTF8.self) }
                i += n
            case 1: i += 8
            case 5: i += 4
            default: return nil
            }
        }
        return nil
    }
}
