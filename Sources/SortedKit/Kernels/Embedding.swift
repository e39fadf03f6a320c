// Token embedding lookup and its scatter-add backward.

enum Embedding {
    /// out[t] = table[tokens[t]]; out: [N, D].
    static func forward(tokens: UnsafePointer<Int32>, table: UnsafePointer<Float>,
                        out: UnsafeMutablePointer<Float>, rows: Int, dim D: Int) {
        for t in 0..<rows {
            (out + t * D).update(from: table + Int(tokens[t]) * D, count: D)
        }
    }

    /// dTable[tokens[t]] += dOut[t].
    static func backward(tokens: UnsafePointer<Int32>, dOut: UnsafePointer<Float>,
                         dTable: UnsafeMutablePointer<Float>, rows: Int, dim D: Int) {
        for t in 0..<rows {
            addInPlace(dTable + Int(tokens[t]) * D, dOut + t * D, D)
        }
    }
}
