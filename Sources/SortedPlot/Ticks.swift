// Ticks: which values an axis labels, and how they are printed.
// Linear axes step by 1, 2 or 5 × 10^k (Heckbert's "nice numbers"), so the labels are values
// people read at a glance; log axes label whole decades, or 1-2-5 × 10^k when the range spans
// less than two decades, or linear ticks within a single decade. Tick values are built from integers (i × 2 / 10, not
// 0.2 + 0.2 + …), so they are the doubles nearest the decimals they print as.
import Foundation

public enum Ticks {
    /// About `target` ticks stepping by 1, 2 or 5 × 10^k whose first and last enclose lo…hi
    /// (an auto-ranged axis widens to them).
    public static func linear(_ lo: Double, _ hi: Double, target: Int = 5) -> [Double] {
        linearSteps(lo, hi, target: target).ticks
    }

    /// The ticks and the decimal exponent of their step (step = m × 10^exponent, m in 1, 2, 5).
    static func linearSteps(_ lo: Double, _ hi: Double, target: Int = 5) -> (ticks: [Double], exponent: Int) {
        guard lo.isFinite, hi.isFinite else { return ([], 0) }
        if lo == hi { return ([lo], 0) }
        let (lo, hi) = (Swift.min(lo, hi), Swift.max(lo, hi))
        // A span that overflows, or is too narrow for its magnitude (1e20 … 1e20 + 1), has no
        // printable 1-2-5 ticks: keep the ends.
        let span = hi - lo
        guard span.isFinite, span > 1e-290, span > 1e-12 * Swift.max(abs(lo), abs(hi)) else { return ([lo, hi], 0) }
        let (m, e) = nice((hi - lo) / Double(Swift.max(1, target - 1)))
        let step = scaled(m, e)
        guard abs(lo / step) < 1e12, abs(hi / step) < 1e12 else { return ([lo, hi], e) }
        let first = Int((lo / step + 1e-9).rounded(.down)), last = Int((hi / step - 1e-9).rounded(.up))
        return ((first...Swift.max(first, last)).map { scaled($0 * m, e) }, e)
    }

    /// Log-axis ticks inside lo…hi (both > 0): the decades, else 1-2-5 × 10^k, else (hi/lo ≤ 10) linear ticks.
    public static func log(_ lo: Double, _ hi: Double) -> [Double] { logTicks(lo, hi).major }

    /// Major ticks with the decimal exponent of each (for printing), and unlabelled minor ticks
    /// (2…9 × 10^k) when the range spans few enough decades to show them.
    static func logTicks(_ lo: Double, _ hi: Double) -> (major: [Double], exponents: [Int], minor: [Double]) {
        guard lo >= 1e-300, hi >= lo, hi <= 1e300 else { return ([], [], []) }
        let inside = { (v: Double) in v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9) }
        let d0 = Int(Foundation.log10(lo).rounded(.down)), d1 = Int(Foundation.log10(hi).rounded(.up))
        var minor: [Double] = []
        if d1 - d0 <= 6 {
            for d in d0...d1 { for k in 2...9 { let v = scaled(k, d); if inside(v) { minor.append(v) } } }
        }
        var decades: [(Double, Int)] = (d0...d1).map { (scaled(1, $0), $0) }.filter { inside($0.0) }
        if decades.count > 8 {   // many decades: every second or third one, so labels do not crowd
            let stride = (decades.count + 7) / 8
            decades = decades.filter { $0.1 % stride == 0 }
        }
        if decades.count >= 2 { return (decades.map(\.0), decades.map(\.1), minor) }
        if hi / lo > 10 {
            var ones: [(Double, Int)] = []
            for d in d0...d1 { for m in [1, 2, 5] { let v = scaled(m, d); if inside(v) { ones.append((v, d)) } } }
            let labelled = Set(ones.map(\.0))
            return (ones.map(\.0), ones.map(\.1), minor.filter { !labelled.contains($0) })
        }
        // Within a decade: plain linear ticks that fall inside the range (1, 2, 3, 4, 5, 6).
        let (ticks, e) = linearSteps(lo, hi, target: 5)
        let kept = ticks.filter(inside)
        let labelled = Set(kept)
        return (kept, kept.map { _ in e }, minor.filter { !labelled.contains($0) })
    }

    /// Tick labels of one linear axis, printed alike: as many decimals as the step needs
    /// ("0.0", "0.2"), thousands as "20k" from 100k up, tiny and huge values as "2e-5", "3e12".
    static func labels(_ ticks: [Double], exponent e: Int) -> [String] {
        let largest = ticks.map(abs).max() ?? 0
        return ticks.map { format($0, exponent: e, largest: largest) }
    }

    /// `v` printed to the precision 10^e, in the style that suits an axis whose largest |value| is `largest`.
    static func format(_ v: Double, exponent e: Int, largest: Double) -> String {
        if largest < 1e-3 || largest >= 1e12 {
            if abs(v) < 1e-300 { return "0" }
            let p = Int(Foundation.log10(abs(v)).rounded(.down))
            return fixed(v / scaled(1, p), decimals: p - e) + "e\(p)"
        }
        if largest >= 1e5 {
            let unit = largest >= 1e9 ? 9 : largest >= 1e6 ? 6 : 3
            let suffix = ["k", "M", "G"][unit / 3 - 1]
            if v == 0 { return "0" }
            return fixed(v / scaled(1, unit), decimals: unit - e) + suffix
        }
        return fixed(v, decimals: -e)
    }

    static func fixed(_ v: Double, decimals: Int) -> String {
        String(format: "%.\(Swift.max(0, Swift.min(decimals, 12)))f", v)
    }

    /// The 1-2-5 step nearest `raw`, as mantissa and decimal exponent.
    static func nice(_ raw: Double) -> (Int, Int) {
        var e = Int(Foundation.log10(raw).rounded(.down))
        if raw / scaled(1, e) >= 10 { e += 1 }   // log10 rounding just below a power of ten
        if raw / scaled(1, e) < 1 { e -= 1 }
        let f = raw / scaled(1, e)
        if f < 1.5 { return (1, e) }
        if f < 3 { return (2, e) }
        if f < 7 { return (5, e) }
        return (1, e + 1)
    }

    /// m × 10^e with one rounding (division by an exact power of ten for e < 0; 10^-e itself
    /// would overflow below e = -308).
    static func scaled(_ m: Int, _ e: Int) -> Double {
        e >= 0 ? Double(m) * pow(10, Double(e)) : e >= -300 ? Double(m) / pow(10, Double(-e)) : Double(m) * pow(10, Double(e))
    }
}
