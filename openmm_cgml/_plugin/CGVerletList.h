#ifndef OPENMM_CGML_VERLET_LIST_H_
#define OPENMM_CGML_VERLET_LIST_H_
/*
 * openmm_cgml: the Verlet list shared by the plugin's forces.
 *
 * Pairs within range = cutoff + skin, each listed once (CSR over the first particle) with the periodic image of
 * its partner and a small tag the owning force chooses (a table index, intra/intermolecular, ...).  A cell list
 * with a half stencil when a rectangular box holds 3 cells of range per side; otherwise all pairs with their
 * nearest image (a vectorised distance prefilter for rectangular and open boxes), listing every image within
 * range in boxes narrower than 2 ranges.  The list is rebuilt when a particle has moved skin/2, the box changed,
 * or it was never built.  Positions are wrapped into the (reduced) cell at each build; between builds
 * local[i] = position[i] - offset[i] keeps each particle in the build's frame.
 */
#include "openmm/OpenMMException.h"
#include "openmm/Vec3.h"
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace OpenMMCGML {

class VerletList {
public:
    /** n particles; pairs within cutoff + skin; owner names the force in error messages; threads >= 1 rows split. */
    void setup(int numParticles, double cutoffDistance, double skinDistance, bool usesPeriodic, int numThreads,
               const std::string& ownerName) {
        n = numParticles;
        cutoff = cutoffDistance;
        skin = skinDistance;
        periodic = usesPeriodic;
        threads = std::max(1, numThreads);
        owner = ownerName;
        built = false;
    }

    /** Check the box against the cutoff, rebuild the list when needed (accept(i, j) gives a pair's tag, or < 0 to
     * leave it out; it is called only for pairs in range), else move local to the new positions.  Returns whether
     * the list was rebuilt. */
    template <class Accept>
    bool update(const std::vector<OpenMM::Vec3>& pos, const OpenMM::Vec3* box, Accept accept) {
        using OpenMM::Vec3;
        if (periodic) {
            double width = std::min(box[0][0], std::min(box[1][1], box[2][2]));
            if (cutoff > 0.5 * width)
                throw OpenMM::OpenMMException(owner + ": the cutoff (" + std::to_string(cutoff) +
                                              " nm) exceeds half the periodic box width (" +
                                              std::to_string(0.5 * width) + " nm)");
        }
        bool rebuild = !built;
        if (built && periodic)
            for (int d = 0; d < 3; d++)
                if (box[d] != buildBox[d])
                    rebuild = true;
        const double half2 = 0.25 * skin * skin;
        if (!rebuild) {
            for (int i = 0; i < n; i++) {
                Vec3 m = pos[i] - buildPos[i];
                if (m.dot(m) > half2 || !std::isfinite(m[0] + m[1] + m[2])) {
                    rebuild = true;
                    break;
                }
            }
        }
        if (rebuild) {
            for (int i = 0; i < n; i++)
                if (!std::isfinite(pos[i][0] + pos[i][1] + pos[i][2]))
                    throw OpenMM::OpenMMException(owner + ": a particle position is NaN or infinite");
            build(pos, box, accept);
        }
        else
            for (int i = 0; i < n; i++)
                local[i] = pos[i] - offset[i];
        return rebuild;
    }

    /** Mark the list stale (the next update rebuilds it). */
    void invalidate() { built = false; }

    /** Separation (partner image minus first particle) of listed pair k whose first particle is i. */
    OpenMM::Vec3 separation(int i, int k) const { return local[partner[k]] + shifts[shiftIndex[k]] - local[i]; }

    // the list: pairs of row i are start[i] .. start[i+1]-1
    std::vector<int> start, partner;
    std::vector<uint16_t> shiftIndex;        // into shifts: (a+3)*49 + (b+3)*7 + (c+3) for a, b, c in -3..3
    std::vector<uint16_t> tag;               // what accept() gave each pair
    OpenMM::Vec3 shifts[343];
    std::vector<OpenMM::Vec3> local;         // positions in the build's wrapped frame
    std::vector<int> rowSplit;               // rows of thread t: rowSplit[t] .. rowSplit[t+1]-1 (equal pair counts)
    long long numBuilds = 0;

private:
    static uint16_t shiftOf(int a, int b, int c) { return (uint16_t) ((a + 3) * 49 + (b + 3) * 7 + (c + 3)); }

    /* The image counts k that bring d to its nearest image in a reduced box (d -= k.box); d is replaced by it.  The
     * positions are wrapped, so |k| <= 2 and rounding is a biased truncation (no libm call). */
    void nearestImage(OpenMM::Vec3& d, const OpenMM::Vec3* box, const double* inv, int* k) const {
        for (int axis = 2; axis >= 0; axis--) {
            k[axis] = (int) (d[axis] * inv[axis] + 8.5) - 8;
            d -= box[axis] * k[axis];
        }
        if (std::abs(k[0]) > 2 || std::abs(k[1]) > 2 || std::abs(k[2]) > 2)
            throw OpenMM::OpenMMException(owner + ": the periodic box is not in OpenMM's reduced form");
    }

    void add(int j, int s, int t) {
        partner.push_back(j);
        shiftIndex.push_back((uint16_t) s);
        tag.push_back((uint16_t) t);
    }

    template <class Accept>
    void build(const std::vector<OpenMM::Vec3>& pos, const OpenMM::Vec3* box, Accept accept) {
        using OpenMM::Vec3;
        using std::floor;
        using std::max;
        using std::min;
        const double rl = cutoff + skin, rl2 = rl * rl;
        offset.assign(n, Vec3());
        local.resize(n);
        for (int s = 0; s < 343; s++) {
            int na = s / 49 - 3, nb = (s / 7) % 7 - 3, nc = s % 7 - 3;
            shifts[s] = periodic ? box[0] * na + box[1] * nb + box[2] * nc : Vec3();
        }
        for (int i = 0; i < n; i++) {
            Vec3 p = pos[i];
            if (periodic) {   // wrap into the (reduced) cell: c, then b, then a
                p -= box[2] * floor(p[2] / box[2][2]);
                p -= box[1] * floor(p[1] / box[1][1]);
                p -= box[0] * floor(p[0] / box[0][0]);
            }
            local[i] = p;
            offset[i] = pos[i] - p;
        }
        start.assign(n + 1, 0);
        partner.clear();
        shiftIndex.clear();
        tag.clear();
        bool rectangular = periodic && box[1][0] == 0 && box[2][0] == 0 && box[2][1] == 0;
        int nc[3] = {0, 0, 0};
        if (rectangular)
            for (int d = 0; d < 3; d++)
                nc[d] = (int) floor(box[d][d] / rl);
        if (rectangular && nc[0] >= 3 && nc[1] >= 3 && nc[2] >= 3) {
            // cell list: each particle's cell, then the 27 cells around each particle's own
            int ncell = nc[0] * nc[1] * nc[2];
            std::vector<int> cellOf(n), head(ncell + 1, 0), members(n);
            double inv[3] = {nc[0] / box[0][0], nc[1] / box[1][1], nc[2] / box[2][2]};
            for (int i = 0; i < n; i++) {
                int c[3];
                for (int d = 0; d < 3; d++)
                    c[d] = min(nc[d] - 1, max(0, (int) (local[i][d] * inv[d])));
                cellOf[i] = (c[0] * nc[1] + c[1]) * nc[2] + c[2];
                head[cellOf[i] + 1]++;
            }
            for (int c = 0; c < ncell; c++)
                head[c + 1] += head[c];
            std::vector<int> fill(head.begin(), head.end() - 1);
            for (int i = 0; i < n; i++)
                members[fill[cellOf[i]]++] = i;
            for (int i = 0; i < n; i++) {
                int ci[3] = {cellOf[i] / (nc[1] * nc[2]), (cellOf[i] / nc[2]) % nc[1], cellOf[i] % nc[2]};
                // half the stencil: the cell itself (partners j > i) and the 13 cells whose offset index exceeds 13
                // (the opposite of each is left out), so every pair is met once
                for (int o = 13; o < 27; o++) {
                    int off[3] = {o / 9 - 1, (o / 3) % 3 - 1, o % 3 - 1}, cj[3], sh[3];
                    for (int d = 0; d < 3; d++) {
                        cj[d] = ci[d] + off[d];
                        sh[d] = 0;
                        if (cj[d] < 0) { cj[d] += nc[d]; sh[d] = -1; }
                        else if (cj[d] >= nc[d]) { cj[d] -= nc[d]; sh[d] = 1; }
                    }
                    int s = shiftOf(sh[0], sh[1], sh[2]);
                    int cell = (cj[0] * nc[1] + cj[1]) * nc[2] + cj[2];
                    for (int m = head[cell]; m < head[cell + 1]; m++) {
                        int j = members[m];
                        if (o == 13 && j <= i)
                            continue;
                        Vec3 d = local[j] + shifts[s] - local[i];
                        if (d.dot(d) < rl2) {
                            int t = accept(i, j);
                            if (t >= 0)
                                add(j, s, t);
                        }
                    }
                }
                start[i + 1] = (int) partner.size();
            }
        }
        else {
            // all pairs, each with its minimum image (OpenMM's reduced-box convention); the positions are wrapped,
            // so every image index is within +-2 and rounding is a biased truncation (no libm call in the loop).  In
            // a box narrower than 2 (cutoff + skin) the images next to the nearest one can be within range too: all
            // are listed.
            const double inv[3] = {periodic ? 1 / box[0][0] : 0, periodic ? 1 / box[1][1] : 0,
                                   periodic ? 1 / box[2][2] : 0};
            const double width = min(box[0][0], min(box[1][1], box[2][2]));
            const bool manyImages = periodic && width < 2 * rl;
            // another image of a pair lies at least (width - r) away, r its nearest image's distance: only pairs
            // with r > width - rl can have a second image in range, and only theirs are searched
            const double shell2 = width > rl ? (width - rl) * (width - rl) : 0.0;
            // rectangular and open boxes: distances to every later particle first, in one vectorisable pass
            // (positions by axis, truncating rounds), so that only pairs in range go further
            const bool prefilter = rectangular || !periodic;
            std::vector<double> x, y, z, r2;
            if (prefilter) {
                x.resize(n), y.resize(n), z.resize(n), r2.resize(n);
                for (int i = 0; i < n; i++) {
                    x[i] = local[i][0];
                    y[i] = local[i][1];
                    z[i] = local[i][2];
                }
            }
            const double lx = periodic ? box[0][0] : 0, ly = periodic ? box[1][1] : 0, lz = periodic ? box[2][2] : 0;
            for (int i = 0; i < n; i++) {
                if (prefilter) {
                    const double xi = x[i], yi = y[i], zi = z[i];
                    for (int j = i + 1; j < n; j++) {
                        double dx = x[j] - xi, dy = y[j] - yi, dz = z[j] - zi;
                        dx -= lx * (double) ((int) (dx * inv[0] + 8.5) - 8);
                        dy -= ly * (double) ((int) (dy * inv[1] + 8.5) - 8);
                        dz -= lz * (double) ((int) (dz * inv[2] + 8.5) - 8);
                        r2[j] = dx * dx + dy * dy + dz * dz;
                    }
                }
                for (int j = i + 1; j < n; j++) {
                    if (prefilter && r2[j] >= rl2)
                        continue;
                    Vec3 d = local[j] - local[i];
                    int k[3] = {0, 0, 0};
                    if (periodic)
                        nearestImage(d, box, inv, k);
                    const bool images = manyImages && d.dot(d) > shell2;
                    int t = -2;   // accept() once, for the first image in range
                    for (int o = (images ? 0 : 13); o < (images ? 27 : 14); o++) {
                        int a = o / 9 - 1, b = (o / 3) % 3 - 1, c = o % 3 - 1;
                        Vec3 e = d + box[0] * a + box[1] * b + box[2] * c;
                        if (e.dot(e) < rl2) {
                            if (t == -2)
                                t = accept(i, j);
                            if (t < 0)
                                break;
                            add(j, shiftOf(a - k[0], b - k[1], c - k[2]), t);
                        }
                    }
                }
                start[i + 1] = (int) partner.size();
            }
        }
        rowSplit.assign(threads + 1, n);
        rowSplit[0] = 0;
        size_t total = partner.size();
        int next = 1;
        for (int i = 0; i < n && next < threads; i++)
            while (next < threads && (size_t) start[i + 1] * threads >= total * next)
                rowSplit[next++] = i + 1;
        buildPos = pos;
        numBuilds++;
        for (int d = 0; d < 3; d++)
            buildBox[d] = box[d];
        built = true;
    }

    int n = 0, threads = 1;
    double cutoff = 0, skin = 0;
    bool periodic = true, built = false;
    std::string owner;
    std::vector<OpenMM::Vec3> offset, buildPos;
    OpenMM::Vec3 buildBox[3];
};

} // namespace OpenMMCGML

#endif
