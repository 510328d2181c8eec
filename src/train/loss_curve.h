// Draws the training log (log.jsonl) as an SVG loss curve: training loss per step as a solid line,
// validation losses as open circles joined by a dashed line (told apart without colour), on axes with
// round tick values, labelled "step" and "loss (nats/token)".
#pragma once

#include <string>

namespace switchyard::train {

// Reads `log_path` and writes `svg_path`. Lines that are not step or validation records are skipped;
// throws Error only if the SVG cannot be written.
void write_loss_curve(const std::string& log_path, const std::string& svg_path);

}  // namespace switchyard::train
