// DraftPlanner: which exit should draft for self-speculation, and how many tokens, from what
// a token costs at batch 1 — the weight bytes it reads — and how often each exit agrees with
// the last layer (the calibrated probes' measured agreement, which greedy acceptance is).
// A round drafts n tokens at exit e (n + 1 rows through layers 1…e, n draft-head passes),
// then layers e+1…L and the full head verify the n + 1 rows in one pass; with agreement α it
// keeps 1 + α + … + αⁿ tokens on average.
import Foundation
import SortedKit

public struct DraftPlan: Sendable, Equatable {
    public var depth: Int
    public var speculate: Int
    /// Expected tokens per weight byte over full-depth decoding's.
    public var expectedSpeedup: Double
    public var agreement: Double
}

public enum DraftPlanner {
    /// The best plan over the probed exits and 1…maxDraft tokens, in the bytes `weights`
    /// store; `shortlist`: the tokens a shortlist draft scores (its head rows are float32),
    /// nil for a draft over the whole head.
    public static func plan(probes: ExitProbes, weights: InferenceModel, shortlist: Int? = nil, maxDraft: Int = 8) -> DraftPlan? {
        let layer = Double(weights.layerBytes(0)), head = Double(weights.head.bytes)
        let draftHead = shortlist.map { Double($0 * weights.head.columns * 4) } ?? head
        let L = Double(weights.layers.count)
        let full = L * layer + head
        var best: DraftPlan?
        for probe in probes.probes {
            let e = Double(probe.depth), a = min(probe.agreement, 0.999)
            for n in 1...max(1, maxDraft) {
                let kept = (1 - pow(a, Double(n + 1))) / (1 - a)
                let cost = Double(n + 1) * e * layer + Double(n) * draftHead + (L - e) * layer + head
                let speedup = kept / cost * full
                if best == nil || speedup > best!.expectedSpeedup {
                    best = DraftPlan(depth: probe.depth, speculate: n, expectedSpeedup: speedup, agreement: probe.agreement)
                }
            }
        }
        return best
    }
}
