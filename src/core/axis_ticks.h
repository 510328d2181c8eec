// Round tick values for the axes of the SVG charts the project draws (the training loss curve, the
// serving benchmark's latency histograms).
#pragma once

#include <string>
#include <vector>

namespace switchyard {

// Ticks for an axis showing [lo, hi]: consecutive multiples of one round step (1, 2, 2.5 or 5 x 10^k,
// and at least `min_step`), the first at or below lo and the last at or above hi, about `target` of
// them (never fewer than two).
std::vector<double> nice_ticks(double lo, double hi, int target, double min_step = 0);

// A tick value written with as many decimals as its axis's step needs: "2.5", "0.25", "1000".
std::string format_tick(double value, double step);

}  // namespace switchyard
