/*
 * openmm_cgml: the compiled tabulated pair force (see CGPairTableForce.h), its implementation, its
 * serialization proxy and a small C interface for ctypes.
 */
#include "CGPairTableForce.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/AssertionUtilities.h"
#include "openmm/internal/ContextImpl.h"
#include "openmm/internal/CustomCPPForceImpl.h"
#include "openmm/internal/SplineFitter.h"
#include "openmm/internal/ThreadPool.h"
#include "openmm/serialization/SerializationNode.h"
#include "openmm/serialization/SerializationProxy.h"
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>

using namespace OpenMM;
using namespace std;

namespace OpenMMCGML {

static pair<int, int> ordered(int a, int b) { return a <= b ? make_pair(a, b) : make_pair(b, a); }

int CGPairTableForce::addParticle(int type) {
    if (type < 0)
        throw OpenMMException("CGPairTableForce: a particle's type must be >= 0");
    particleTypes.push_back(type);
    return (int) particleTypes.size() - 1;
}

int CGPairTableForce::getParticleType(int index) const {
    ASSERT_VALID_INDEX(index, particleTypes);
    return particleTypes[index];
}

void CGPairTableForce::setParticleType(int index, int type) {
    ASSERT_VALID_INDEX(index, particleTypes);
    if (type < 0)
        throw OpenMMException("CGPairTableForce: a particle's type must be >= 0");
    particleTypes[index] = type;
}

void CGPairTableForce::setNumTypes(int n) {
    if (n < 1)
        throw OpenMMException("CGPairTableForce: the number of types must be >= 1");
    numTypes = n;
}

int CGPairTableForce::addExclusion(int particle1, int particle2) {
    exclusions.push_back(ordered(particle1, particle2));
    return (int) exclusions.size() - 1;
}

void CGPairTableForce::getExclusionParticles(int index, int& particle1, int& particle2) const {
    ASSERT_VALID_INDEX(index, exclusions);
    particle1 = exclusions[index].first;
    particle2 = exclusions[index].second;
}

void CGPairTableForce::setTable(int type1, int type2, const vector<double>& values) {
    if (type1 < 0 || type2 < 0)
        throw OpenMMException("CGPairTableForce: table types must be >= 0");
    if (values.size() < 4)
        throw OpenMMException("CGPairTableForce: a table needs at least 4 values");
    for (double v : values)
        if (!std::isfinite(v))
            throw OpenMMException("CGPairTableForce: a table contains NaN or infinite values");
    tables[ordered(type1, type2)] = values;
}

bool CGPairTableForce::hasTable(int type1, int type2) const {
    return tables.count(ordered(type1, type2)) > 0;
}

const vector<double>& CGPairTableForce::getTable(int type1, int type2) const {
    auto it = tables.find(ordered(type1, type2));
    if (it == tables.end())
        throw OpenMMException("CGPairTableForce: no table for this type pair");
    return it->second;
}

vector<pair<int, int> > CGPairTableForce::getTablePairs() const {
    vector<pair<int, int> > out;
    for (auto& t : tables)
        out.push_back(t.first);
    return out;
}

void CGPairTableForce::setCutoffDistance(double distance) {
    if (!(distance > 0))
        throw OpenMMException("CGPairTableForce: the cutoff must be positive");
    cutoff = distance;
}

void CGPairTableForce::setNeighborSkin(double distance) {
    if (!(distance >= 0))
        throw OpenMMException("CGPairTableForce: the neighbour-list skin must be >= 0");
    skin = distance;
}

/* ------------------------------------------------------------------------------------------------------------ */

class CGPairTableForceImpl : public CustomCPPForceImpl {
public:
    CGPairTableForceImpl(const CGPairTableForce& owner) : CustomCPPForceImpl(owner), owner(owner) {}
    const CGPairTableForce& getOwner() const { return owner; }
    void initialize(ContextImpl& context);
    double computeForce(ContextImpl& context, const vector<Vec3>& positions, vector<Vec3>& forces);
    void updateParametersInContext(ContextImpl& context);
    long long numBuilds = 0;
private:
    void setTables();
    void buildList(const vector<Vec3>& positions, const Vec3* box);
    double computeRows(int first, int last, vector<Vec3>& forces) const;
    const CGPairTableForce& owner;
    int n = 0, nt = 0, nIntervals = 0;
    double cutoff = 0, skin = 0, invH = 0;
    bool periodic = true;
    vector<int> types, pairTable;            // pairTable[ti*nt+tj]: table index or -1
    vector<double> coef;                     // per table, per interval: c0..c3 of the cubic in t
    vector<vector<int> > excluded;           // sorted, per particle (partners with a larger index)
    // Verlet list (CSR over i; each pair once) with the periodic image of each pair
    vector<int> start, partner;
    vector<uint16_t> shiftIndex;             // into shifts: (a+3)*49 + (b+3)*7 + (c+3) for a, b, c in -3..3
    vector<uint16_t> pairTab;                // the table of each listed pair
    Vec3 shifts[343];
    vector<Vec3> offset, buildPos, local;   // local = position - offset (the build's wrapped frame)
    Vec3 buildBox[3];
    bool built = false;
    // threads: the CPU platform's count ("Threads"); each sums its rows' forces into its own array
    unique_ptr<ThreadPool> pool;
    vector<vector<Vec3> > threadForces;
    vector<int> rowSplit;                    // rows of thread t: rowSplit[t] .. rowSplit[t+1]-1 (equal pair counts)
};

ForceImpl* CGPairTableForce::createImpl() const { return new CGPairTableForceImpl(*this); }

long long CGPairTableForce::getNumListBuilds(Context& context) {
    return dynamic_cast<CGPairTableForceImpl&>(getImplInContext(context)).numBuilds;
}

void CGPairTableForce::updateParametersInContext(Context& context) {
    dynamic_cast<CGPairTableForceImpl&>(getImplInContext(context)).updateParametersInContext(getContextImpl(context));
}

void CGPairTableForceImpl::setTables() {
    nt = owner.getNumTypes();
    for (int t : types)
        if (t >= nt)
            throw OpenMMException("CGPairTableForce: a particle's type is >= the number of types");
    auto pairs = owner.getTablePairs();
    size_t npts = 0;
    for (auto& p : pairs) {
        if (p.second >= nt)
            throw OpenMMException("CGPairTableForce: a table's type is >= the number of types");
        size_t m = owner.getTable(p.first, p.second).size();
        if (npts == 0)
            npts = m;
        else if (m != npts)
            throw OpenMMException("CGPairTableForce: every table must have the same number of values");
    }
    if (nIntervals != 0 && (int) npts - 1 != nIntervals)
        throw OpenMMException("CGPairTableForce: updateParametersInContext cannot change the table length");
    nIntervals = (int) npts - 1;
    double h = cutoff / nIntervals;
    invH = 1.0 / h;
    vector<double> x(npts);
    for (size_t k = 0; k < npts; k++)
        x[k] = k * h;
    if (pairs.size() > 65535)
        throw OpenMMException("CGPairTableForce: at most 65535 tables");
    pairTable.assign(nt * nt, -1);
    coef.assign(4 * nIntervals * pairs.size(), 0.0);
    for (size_t p = 0; p < pairs.size(); p++) {
        const vector<double>& y = owner.getTable(pairs[p].first, pairs[p].second);
        vector<double> d2;
        SplineFitter::createNaturalSpline(x, y, d2);
        double* c = &coef[4 * nIntervals * p];
        for (int k = 0; k < nIntervals; k++) {
            double a = d2[k] * h * h / 6, b = d2[k + 1] * h * h / 6;
            c[4 * k] = y[k];
            c[4 * k + 1] = y[k + 1] - y[k] - 2 * a - b;
            c[4 * k + 2] = 3 * a;
            c[4 * k + 3] = b - a;
        }
        pairTable[pairs[p].first * nt + pairs[p].second] = (int) p;
        pairTable[pairs[p].second * nt + pairs[p].first] = (int) p;
    }
}

void CGPairTableForceImpl::initialize(ContextImpl& context) {
    CustomCPPForceImpl::initialize(context);
    n = context.getSystem().getNumParticles();
    if (owner.getNumParticles() != n) {
        stringstream msg;
        msg << "CGPairTableForce must have exactly as many particles as the System it belongs to (" << n << "), has "
            << owner.getNumParticles();
        throw OpenMMException(msg.str());
    }
    cutoff = owner.getCutoffDistance();
    skin = owner.getNeighborSkin();
    periodic = owner.usesPeriodicBoundaryConditions();
    types.resize(n);
    for (int i = 0; i < n; i++)
        types[i] = owner.getParticleType(i);
    if (owner.getNumTypes() < 1)
        throw OpenMMException("CGPairTableForce: setNumTypes() was not called");
    setTables();
    excluded.assign(n, vector<int>());
    for (int e = 0; e < owner.getNumExclusions(); e++) {
        int a, b;
        owner.getExclusionParticles(e, a, b);
        if (a < 0 || b >= n || a == b)
            throw OpenMMException("CGPairTableForce: an exclusion names an invalid particle pair");
        excluded[a].push_back(b);
    }
    for (auto& v : excluded) {
        sort(v.begin(), v.end());
        v.erase(unique(v.begin(), v.end()), v.end());
    }
    int threads = 1;
    if (context.getPlatform().getName() == "CPU") {
        try {
            threads = stoi(context.getPlatform().getPropertyValue(context.getOwner(), "Threads"));
        }
        catch (...) {
            threads = 1;
        }
    }
    if (threads > 1) {
        pool.reset(new ThreadPool(threads));
        threadForces.assign(threads, vector<Vec3>(n));
    }
    built = false;
}

void CGPairTableForceImpl::updateParametersInContext(ContextImpl& context) {
    if (owner.getNumParticles() != n)
        throw OpenMMException("CGPairTableForce.updateParametersInContext: the number of particles changed");
    setTables();
    built = false;   // the list holds each pair's table
    context.systemChanged();
}

/* Index of the periodic shift a*A + b*B + c*C (a, b, c in -3..3) in the shift table. */
static inline uint16_t shiftOf(int a, int b, int c) {
    return (uint16_t) ((a + 3) * 49 + (b + 3) * 7 + (c + 3));
}

/* The image counts k that bring d to its nearest image in a reduced box (d -= k.box); d is replaced by it.  The
 * positions are wrapped, so |k| <= 2 and rounding is a biased truncation (no libm call). */
static inline void nearestImage(Vec3& d, const Vec3* box, const double* inv, int* k) {
    for (int axis = 2; axis >= 0; axis--) {
        k[axis] = (int) (d[axis] * inv[axis] + 8.5) - 8;
        d -= box[axis] * k[axis];
    }
    if (abs(k[0]) > 2 || abs(k[1]) > 2 || abs(k[2]) > 2)
        throw OpenMMException("CGPairTableForce: the periodic box is not in OpenMM's reduced form");
}

static inline bool isExcluded(const vector<int>& ex, int j) {
    return !ex.empty() && binary_search(ex.begin(), ex.end(), j);
}

void CGPairTableForceImpl::buildList(const vector<Vec3>& pos, const Vec3* box) {
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
    pairTab.clear();
    bool rectangular = periodic && box[1][0] == 0 && box[2][0] == 0 && box[2][1] == 0;
    int nc[3] = {0, 0, 0};
    if (rectangular)
        for (int d = 0; d < 3; d++)
            nc[d] = (int) floor(box[d][d] / rl);
    if (rectangular && nc[0] >= 3 && nc[1] >= 3 && nc[2] >= 3) {
        // cell list: each particle's cell, then the 27 cells around each particle's own
        int ncell = nc[0] * nc[1] * nc[2];
        vector<int> cellOf(n), head(ncell + 1, 0), members(n);
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
        vector<int> fill(head.begin(), head.end() - 1);
        for (int i = 0; i < n; i++)
            members[fill[cellOf[i]]++] = i;
        for (int i = 0; i < n; i++) {
            const int* row = &pairTable[types[i] * nt];
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
                    int tab = row[types[j]];
                    if (tab < 0)
                        continue;
                    Vec3 d = local[j] + shifts[s] - local[i];
                    if (d.dot(d) < rl2 && !isExcluded(excluded[min(i, j)], max(i, j))) {
                        partner.push_back(j);
                        shiftIndex.push_back((uint16_t) s);
                        pairTab.push_back((uint16_t) tab);
                    }
                }
            }
            start[i + 1] = (int) partner.size();
        }
    }
    else {
        // all pairs, each with its minimum image (OpenMM's reduced-box convention); the positions are wrapped, so
        // every image index is within +-2 and rounding is a biased truncation (no libm call in the loop).  In a box
        // narrower than 2 (cutoff + skin) the images next to the nearest one can be within range too: all are listed.
        const double inv[3] = {periodic ? 1 / box[0][0] : 0, periodic ? 1 / box[1][1] : 0,
                               periodic ? 1 / box[2][2] : 0};
        const double width = min(box[0][0], min(box[1][1], box[2][2]));
        const bool manyImages = periodic && width < 2 * rl;
        // another image of a pair lies at least (width - r) away, r its nearest image's distance: only pairs with
        // r > width - rl can have a second image in range, and only theirs are searched
        const double shell2 = width > rl ? (width - rl) * (width - rl) : 0.0;
        // rectangular boxes: distances to every later bead first, in one vectorisable pass (positions by axis,
        // truncating rounds), so that only pairs in range go further
        const bool prefilter = rectangular || !periodic;
        vector<double> x, y, z, r2;
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
            const int* row = &pairTable[types[i] * nt];
            for (int j = i + 1; j < n; j++) {
                if (prefilter && r2[j] >= rl2)
                    continue;
                int tab = row[types[j]];
                if (tab < 0 || isExcluded(excluded[i], j))
                    continue;
                Vec3 d = local[j] - local[i];
                int k[3] = {0, 0, 0};
                if (periodic)
                    nearestImage(d, box, inv, k);
                const bool images = manyImages && d.dot(d) > shell2;
                for (int o = (images ? 0 : 13); o < (images ? 27 : 14); o++) {
                    int a = o / 9 - 1, b = (o / 3) % 3 - 1, c = o % 3 - 1;
                    Vec3 e = d + box[0] * a + box[1] * b + box[2] * c;
                    if (e.dot(e) < rl2) {
                        partner.push_back(j);
                        shiftIndex.push_back(shiftOf(a - k[0], b - k[1], c - k[2]));
                        pairTab.push_back((uint16_t) tab);
                    }
                }
            }
            start[i + 1] = (int) partner.size();
        }
    }
    if (pool) {
        int t = pool->getNumThreads();
        rowSplit.assign(t + 1, n);
        rowSplit[0] = 0;
        size_t total = partner.size();
        int next = 1;
        for (int i = 0; i < n && next < t; i++)
            while (next < t && (size_t) start[i + 1] * t >= total * next)
                rowSplit[next++] = i + 1;
    }
    buildPos = pos;
    numBuilds++;
    for (int d = 0; d < 3; d++)
        buildBox[d] = box[d];
    built = true;
}

double CGPairTableForceImpl::computeForce(ContextImpl& context, const vector<Vec3>& pos, vector<Vec3>& forces) {
    Vec3 box[3];
    context.getPeriodicBoxVectors(box[0], box[1], box[2]);
    if (periodic) {
        double width = min(box[0][0], min(box[1][1], box[2][2]));
        if (cutoff > 0.5 * width) {
            stringstream msg;
            msg << "CGPairTableForce: the cutoff (" << cutoff << " nm) exceeds half the periodic box width ("
                << 0.5 * width << " nm)";
            throw OpenMMException(msg.str());
        }
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
                throw OpenMMException("CGPairTableForce: a particle position is NaN or infinite");
        buildList(pos, box);
    }
    else
        for (int i = 0; i < n; i++)
            local[i] = pos[i] - offset[i];
    std::fill(forces.begin(), forces.end(), Vec3());   // the caller's array is reused: store, do not add
    if (!pool)
        return computeRows(0, n, forces);
    int t = pool->getNumThreads();
    vector<double> energies(t, 0.0);
    pool->execute([&] (ThreadPool& p, int k) {
        fill(threadForces[k].begin(), threadForces[k].end(), Vec3());
        energies[k] = computeRows(rowSplit[k], rowSplit[k + 1], threadForces[k]);
    });
    pool->waitForThreads();
    pool->execute([&] (ThreadPool& p, int k) {   // sum the threads' arrays, each thread a block of particles
        int first = (int) ((long long) n * k / t), last = (int) ((long long) n * (k + 1) / t);
        for (int m = 0; m < t; m++)
            for (int i = first; i < last; i++)
                forces[i] += threadForces[m][i];
    });
    pool->waitForThreads();
    double energy = 0;
    for (double e : energies)
        energy += e;
    return energy;
}

double CGPairTableForceImpl::computeRows(int first, int last, vector<Vec3>& forces) const {
    // Each row's pairs in blocks: their separations gathered, then square roots and reciprocals in one pass that
    // the compiler vectorises (two or four pairs per instruction), then the splines and the forces.
    const int B = 64;
    double dx[B], dy[B], dz[B], r2[B], r[B], inv[B];
    const double rc2 = cutoff * cutoff;
    const int stride = 4 * nIntervals;
    double energy = 0;
    for (int i = first; i < last; i++) {
        const Vec3 pi = local[i];
        Vec3 fi;
        for (int k0 = start[i]; k0 < start[i + 1]; k0 += B) {
            const int m = min(B, start[i + 1] - k0);
            for (int q = 0; q < m; q++) {
                const int k = k0 + q;
                const Vec3 d = local[partner[k]] + shifts[shiftIndex[k]] - pi;
                dx[q] = d[0];
                dy[q] = d[1];
                dz[q] = d[2];
                r2[q] = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            }
            for (int q = 0; q < m; q++) {
                r[q] = sqrt(r2[q]);
                inv[q] = 1.0 / r[q];
            }
            for (int q = 0; q < m; q++) {
                if (r2[q] >= rc2 || r2[q] == 0)
                    continue;
                const int k = k0 + q;
                double x = r[q] * invH;
                int idx = min((int) x, nIntervals - 1);
                double t = x - idx;
                const double* c = &coef[pairTab[k] * stride + 4 * idx];
                energy += c[0] + t * (c[1] + t * (c[2] + t * c[3]));
                double g = (c[1] + t * (2 * c[2] + 3 * t * c[3])) * invH * inv[q];   // dU/dr / r
                Vec3 f(dx[q] * g, dy[q] * g, dz[q] * g);   // force on i; its opposite on j
                fi += f;
                forces[partner[k]] -= f;
            }
        }
        forces[i] += fi;
    }
    return energy;
}

/* ------------------------------------------------------------------------------------------------------------ */

class CGPairTableForceProxy : public SerializationProxy {
public:
    CGPairTableForceProxy() : SerializationProxy("CGPairTableForce") {}
    void serialize(const void* object, SerializationNode& node) const {
        node.setIntProperty("version", 1);
        const CGPairTableForce& force = *reinterpret_cast<const CGPairTableForce*>(object);
        node.setIntProperty("forceGroup", force.getForceGroup());
        node.setStringProperty("name", force.getName());
        node.setDoubleProperty("cutoff", force.getCutoffDistance());
        node.setDoubleProperty("skin", force.getNeighborSkin());
        node.setIntProperty("periodic", force.usesPeriodicBoundaryConditions() ? 1 : 0);
        node.setIntProperty("numTypes", force.getNumTypes());
        SerializationNode& particles = node.createChildNode("Particles");
        for (int i = 0; i < force.getNumParticles(); i++)
            particles.createChildNode("Particle").setIntProperty("t", force.getParticleType(i));
        SerializationNode& exclusions = node.createChildNode("Exclusions");
        for (int i = 0; i < force.getNumExclusions(); i++) {
            int a, b;
            force.getExclusionParticles(i, a, b);
            exclusions.createChildNode("Exclusion").setIntProperty("p1", a).setIntProperty("p2", b);
        }
        SerializationNode& tables = node.createChildNode("Tables");
        for (auto& p : force.getTablePairs()) {
            SerializationNode& table = tables.createChildNode("Table");
            table.setIntProperty("type1", p.first).setIntProperty("type2", p.second);
            for (double v : force.getTable(p.first, p.second))
                table.createChildNode("V").setDoubleProperty("v", v);
        }
    }
    void* deserialize(const SerializationNode& node) const {
        int version = node.getIntProperty("version");
        if (version != 1)
            throw OpenMMException("CGPairTableForce: unsupported version " + to_string(version));
        CGPairTableForce* force = new CGPairTableForce();
        try {
            force->setForceGroup(node.getIntProperty("forceGroup", 0));
            force->setName(node.getStringProperty("name", force->getName()));
            force->setCutoffDistance(node.getDoubleProperty("cutoff"));
            force->setNeighborSkin(node.getDoubleProperty("skin", 0.1));
            force->setUsesPeriodicBoundaryConditions(node.getIntProperty("periodic") != 0);
            force->setNumTypes(node.getIntProperty("numTypes"));
            for (auto& p : node.getChildNode("Particles").getChildren())
                force->addParticle(p.getIntProperty("t"));
            for (auto& e : node.getChildNode("Exclusions").getChildren())
                force->addExclusion(e.getIntProperty("p1"), e.getIntProperty("p2"));
            for (auto& t : node.getChildNode("Tables").getChildren()) {
                vector<double> values;
                for (auto& v : t.getChildren())
                    values.push_back(v.getDoubleProperty("v"));
                force->setTable(t.getIntProperty("type1"), t.getIntProperty("type2"), values);
            }
        }
        catch (...) {
            delete force;
            throw;
        }
        return force;
    }
};

} // namespace OpenMMCGML

using namespace OpenMMCGML;

extern "C" {

__attribute__((constructor)) void cgml_register_proxies() {
    SerializationProxy::registerProxy(typeid(CGPairTableForce), new CGPairTableForceProxy());
}

/* The C interface (ctypes): a force is the address SWIG holds (int(force.this)).  Errors return -1 and leave
 * their message for cgml_last_error(). */
static thread_local string lastError;

const char* cgml_last_error() { return lastError.c_str(); }

static CGPairTableForce* asPairForce(void* force) {
    CGPairTableForce* f = dynamic_cast<CGPairTableForce*>(reinterpret_cast<Force*>(force));
    if (f == NULL)
        throw OpenMMException("this force is not a CGPairTableForce");
    return f;
}

int cgml_pair_force_set_table(void* force, int type1, int type2, const double* values, int count) {
    try {
        CGPairTableForce* f = asPairForce(force);
        if (!f->hasTable(type1, type2))
            throw OpenMMException("no table for this type pair in the force (the pairs cannot change)");
        if ((size_t) count != f->getTable(type1, type2).size())
            throw OpenMMException("the new table has a different length (the grid cannot change)");
        f->setTable(type1, type2, vector<double>(values, values + count));
        return 0;
    }
    catch (exception& e) {
        lastError = e.what();
        return -1;
    }
}

int cgml_pair_force_update_in_context(void* force, void* context) {
    try {
        asPairForce(force)->updateParametersInContext(*reinterpret_cast<Context*>(context));
        return 0;
    }
    catch (exception& e) {
        lastError = e.what();
        return -1;
    }
}

long long cgml_pair_force_num_list_builds(void* force, void* context) {
    try {
        return asPairForce(force)->getNumListBuilds(*reinterpret_cast<Context*>(context));
    }
    catch (exception& e) {
        lastError = e.what();
        return -1;
    }
}

int cgml_pair_force_is(void* force) {
    return dynamic_cast<CGPairTableForce*>(reinterpret_cast<Force*>(force)) != NULL ? 1 : 0;
}

}
