// EvaluationChart: what `eval --svg` and `plot` of eval reports draw — per-exit quality
// (loss) of one or more models next to quality against the generation speed measured at
// each exit, the trade-off a depth buys.
import SortedPlot

public enum EvaluationChart {
    /// runs: (name, reports) per model, e.g. [("SoFT", …), ("SFT", …)].
    /// logLoss: a logarithmic loss axis, so exits a few tenths apart stay apart next to an
    /// untrained exit's 25 nats.
    public static func svg(_ runs: [(name: String, reports: [ExitReport])], logLoss: Bool = false) -> String {
        let markers: [Marker] = [.circle, .square, .diamond, .triangle]
        let loss = LineChart(
            title: "Validation loss per exit", x: Axis("exit depth (layers)"),
            y: Axis("loss (nats per response token)", scale: logLoss ? .log : .linear),
            series: runs.enumerated().map { i, run in
                Series(run.name, x: run.reports.map { Double($0.depth) }, y: run.reports.map(\.loss),
                       marker: markers[i % markers.count])
            })
        // Quality against speed: exact match when answers were generated, else accuracy.
        let answered = runs.allSatisfy { $0.reports.allSatisfy { $0.exactMatch != nil && $0.generationTokensPerSecond != nil } }
        let speed = LineChart(
            title: answered ? "Exact match against generation speed" : "Next-token accuracy per exit",
            x: Axis(answered ? "generated tokens/s" : "exit depth (layers)"),
            y: Axis(answered ? "exact match" : "next-token accuracy", min: 0),
            series: runs.enumerated().map { i, run in
                Series(run.name,
                       x: run.reports.map { answered ? $0.generationTokensPerSecond! : Double($0.depth) },
                       y: run.reports.map { answered ? $0.exactMatch! : $0.accuracy },
                       marker: markers[i % markers.count], labels: run.reports.map { "exit \($0.depth)" })
            })
        return SVGDocument(panels: [loss, speed], columns: 2).svg()
    }
}
