#!/usr/bin/env bash
# Runs a Vulkan test binary under the Khronos validation layer and fails on
# any message the layer reports (its default action prints "Validation
# Error" / "Validation Warning" lines), as well as on the test's own
# failure. Skips (77) where the layer is not installed (Debian:
# vulkan-validationlayers, which scripts/install-deps.sh installs).
# Usage: vk_validation.sh COMMAND [ARGS...]
set -uo pipefail
layer=VK_LAYER_KHRONOS_validation
found=0
for d in /usr/share/vulkan/explicit_layer.d /etc/vulkan/explicit_layer.d \
         /usr/local/share/vulkan/explicit_layer.d ${VK_LAYER_PATH:+${VK_LAYER_PATH//:/ }}; do
    grep -qs "\"$layer\"" "$d"/*.json && found=1
done
[ $found = 1 ] || { echo "vk_validation: $layer not installed: skipped"; exit 77; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
VK_INSTANCE_LAYERS=$layer "$@" > "$log" 2>&1
rc=$?
tail -n 3 "$log"
msg='Validation \(Error\|Warning\)'
if grep -q "$msg" "$log"; then
    echo "vk_validation: the layer reported $(grep -c "$msg" "$log") message(s):"
    grep -m 5 "$msg" "$log" | cut -c1-400
    exit 1
fi
[ $rc = 0 ] || { echo "vk_validation: the test failed (rc=$rc)"; exit 1; }
echo "vk_validation: no message from $layer"
