// Draws the training log (log.jsonl) as an SVG loss curve: training loss per step as a solid line,
// validation losses as open circles joined by a dashed line (told apart without colour), on axes with
// round tick values, labelled "step" and "loss (nats/token)".
#pragma once

#include <string>
#include <vector>

namespace switchyard::train {

// Reads `log_path` and writes `svg_path`. Lines that are not step or validation records are skipped;
// throws Error only if the SVG cannot be written.
void write_loss_curve(const std::string& log_path, const std::string& svg_path);

// Ticks for an axis showing [lo, hi]: consecutive multiples of one round step (1, 2, 2.5 or 5 x 10^k,
// and at least `min_step`), the first at or below lo and the last at or above hi, about `target` of
// them (never fewer than two).
std::vector<double> nice_ticks(double lo, double hi, int target, double min_step = 0);

// A tick value written with as many decimals as its axis's step needs: "2.5", "0.25", "1000".
std::string format_tick(double value, double step);

}  // namespace switchyard::train
