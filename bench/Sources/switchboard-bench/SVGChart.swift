import Foundation

/// A grouped bar chart as a standalone SVG document, written by the bench itself so the
/// results need no plotting tool. Values ≤ 0 are drawn as missing. With `logarithmic`, the
/// y axis spans whole decades around the data (latencies and message counts span several).
struct SVGChart {
    struct Series {
        var name: String
        var color: String
        /// One value per group (nil: no bar).
        var values: [Double?]
    }

    var title: String
    var yLabel: String
    var groups: [String]
    var series: [Series]
    var logarithmic = true
    var note: String?

    static let palette = ["#1f77b4", "#9ecae1", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]

    func render(width: Double = 760, height: Double = 420) -> String {
        let left = 70.0, right = 20.0, top = 48.0, bottom = note == nil ? 96.0 : 114.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let positive = series.flatMap { $0.values.compactMap { $0 } }.filter { $0 > 0 }
        let (low, high) = yRange(positive)
        func y(_ value: Double) -> Double {
            let fraction = logarithmic ? (log10(value) - log10(low)) / (log10(high) - log10(low)) : (value - low) / (high - low)
            return top + plotHeight * (1 - min(1, max(0, fraction)))
        }
        var svg: [String] = []
        svg.append(##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(Int(width))" height="\##(Int(height))" viewBox="0 0 \##(Int(width)) \##(Int(height))" font-family="sans-serif" font-size="12">"##)
        svg.append(##"<rect width="100%" height="100%" fill="white"/>"##)
        svg.append(##"<text x="\##(Int(width / 2))" y="22" text-anchor="middle" font-size="15" font-weight="bold">\##(escape(title))</text>"##)
        // Grid and y ticks.
        for tick in ticks(low, high) {
            let ty = y(tick)
            svg.append(##"<line x1="\##(f(left))" y1="\##(f(ty))" x2="\##(f(left + plotWidth))" y2="\##(f(ty))" stroke="#ddd"/>"##)
            svg.append(##"<text x="\##(f(left - 6))" y="\##(f(ty + 4))" text-anchor="end">\##(label(tick))</text>"##)
        }
        svg.append(##"<text transform="translate(16 \##(f(top + plotHeight / 2))) rotate(-90)" text-anchor="middle">\##(escape(yLabel))</text>"##)
        svg.append(##"<line x1="\##(f(left))" y1="\##(f(top + plotHeight))" x2="\##(f(left + plotWidth))" y2="\##(f(top + plotHeight))" stroke="#333"/>"##)
        // Bars.
        let groupWidth = plotWidth / Double(max(1, groups.count))
        let barWidth = groupWidth * 0.8 / Double(max(1, series.count))
        for (g, group) in groups.enumerated() {
            let gx = left + groupWidth * Double(g)
            for (s, serie) in series.enumerated() {
                guard g < serie.values.count, let value = serie.values[g], value > 0 else { continue }
                let x = gx + groupWidth * 0.1 + barWidth * Double(s)
                let barTop = y(value)
                svg.append(##"<rect x="\##(f(x))" y="\##(f(barTop))" width="\##(f(barWidth - 1))" height="\##(f(top + plotHeight - barTop))" fill="\##(serie.color)"><title>\##(escape(serie.name)) \##(escape(group)): \##(label(value))</title></rect>"##)
            }
            svg.append(##"<text x="\##(f(gx + groupWidth / 2))" y="\##(f(top + plotHeight + 16))" text-anchor="middle">\##(escape(group))</text>"##)
        }
        // Legend.
        var lx = left
        var ly = top + plotHeight + 36
        for serie in series {
            let itemWidth = 16 + Double(serie.name.count) * 6.6 + 18
            if lx > left && lx + itemWidth > width - right {
                lx = left
                ly += 18
            }
            svg.append(##"<rect x="\##(f(lx))" y="\##(f(ly - 10))" width="12" height="12" fill="\##(serie.color)"/>"##)
            svg.append(##"<text x="\##(f(lx + 16))" y="\##(f(ly))">\##(escape(serie.name))</text>"##)
            lx += itemWidth
        }
        if let note {
            svg.append(##"<text x="\##(f(left))" y="\##(f(ly + 22))" font-size="11" fill="#555">\##(escape(note))</text>"##)
        }
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }

    private func yRange(_ values: [Double]) -> (Double, Double) {
        guard let minimum = values.min(), let maximum = values.max() else { return (logarithmic ? 0.1 : 0, 1) }
        if logarithmic {
            let low = pow(10, floor(log10(minimum)))
            var high = pow(10, ceil(log10(maximum)))
            if high <= low { high = low * 10 }
            return (low, high)
        }
        return (0, maximum * 1.1)
    }

    private func ticks(_ low: Double, _ high: Double) -> [Double] {
        if logarithmic {
            var ticks: [Double] = []
            var tick = low
            while tick <= high * 1.0001 {
                ticks.append(tick)
                tick *= 10
            }
            return ticks
        }
        return (0...5).map { low + (high - low) * Double($0) / 5 }
    }

    private func f(_ value: Double) -> String { String(format: "%.1f", value) }

    private func label(_ value: Double) -> String {
        if value >= 1000 { return String(format: "%.0f", value) }
        if value >= 10 { return String(format: "%.0f", value) }
        if value >= 1 { return String(format: "%.1f", value) }
        return String(format: "%.2g", value)
    }

    private func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
