/*
 * openmm_cgml: the compiled SchNet-style CG network (see CGSchNetForce.h), its implementation, its serialization
 * proxy and its C interface for ctypes.
 */
#include "CGSchNetForce.h"
#include "CGPluginCommon.h"
#include "CGVerletList.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/AssertionUtilities.h"
#include "openmm/internal/ContextImpl.h"
#include "openmm/internal/CustomCPPForceImpl.h"
#include "openmm/internal/ThreadPool.h"
#include "openmm/serialization/SerializationNode.h"
#include "openmm/serialization/SerializationProxy.h"
#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>

using namespace OpenMM;
using namespace std;

namespace OpenMMCGML {

static const char* BLOCKS[2] = {"intra", "inter"};
static const char* LAYERS[9] = {"filter1.weight", "filter1.bias", "filter2.weight", "filter2.bias", "in2f.weight",
                                "out1.weight", "out1.bias", "out2.weight", "out2.bias"};

CGSchNetForce::CGSchNetForce() : numTypes(0), hidden(0), numRbf(0), numInteractions(0), intraCutoff(0),
    interCutoff(0), tableSpacing(0.001), skin(0.1), periodic(true), doublePrecision(false) {}

int CGSchNetForce::addParticle(int type, int molecule) {
    if (type < 0)
        throw OpenMMException("CGSchNetForce: a particle's type must be >= 0");
    particleTypes.push_back(type);
    particleMolecules.push_back(molecule);
    return (int) particleTypes.size() - 1;
}

void CGSchNetForce::getParticleParameters(int index, int& type, int& molecule) const {
    ASSERT_VALID_INDEX(index, particleTypes);
    type = particleTypes[index];
    molecule = particleMolecules[index];
}

void CGSchNetForce::setArchitecture(int types, int width, int rbf, int steps, double intra, double inter) {
    if (types < 1 || width < 2 || rbf < 2 || steps < 1)
        throw OpenMMException("CGSchNetForce: the architecture needs >= 1 type, hidden >= 2, numRbf >= 2 and >= 1 "
                              "interaction");
    if (!(intra > 0) || !(inter > 0))
        throw OpenMMException("CGSchNetForce: the cutoffs must be positive");
    numTypes = types;
    hidden = width;
    numRbf = rbf;
    numInteractions = steps;
    intraCutoff = intra;
    interCutoff = inter;
    parameters.clear();
}

map<string, int> CGSchNetForce::getParameterSizes() const {
    map<string, int> sizes;
    const int h = hidden, r = numRbf, half = hidden / 2;
    sizes["embedding"] = numTypes * h;
    for (int b = 0; b < 2; b++) {
        sizes[string(BLOCKS[b]) + ".centers"] = r;
        sizes[string(BLOCKS[b]) + ".gamma"] = 1;
        for (int k = 0; k < numInteractions; k++) {
            string p = string(BLOCKS[b]) + to_string(k) + ".";
            const int n[9] = {h * r, h, h * h, h, h * h, h * h, h, h * h, h};
            for (int l = 0; l < 9; l++)
                sizes[p + LAYERS[l]] = n[l];
        }
    }
    sizes["readout1.weight"] = half * h;
    sizes["readout1.bias"] = half;
    sizes["readout2.weight"] = half;
    sizes["readout2.bias"] = 1;
    return sizes;
}

void CGSchNetForce::setParameter(const string& name, const vector<double>& values) {
    auto sizes = getParameterSizes();
    auto it = sizes.find(name);
    if (it == sizes.end())
        throw OpenMMException("CGSchNetForce: no parameter '" + name + "' in this architecture (set it first)");
    if ((int) values.size() != it->second)
        throw OpenMMException("CGSchNetForce: parameter '" + name + "' needs " + to_string(it->second) +
                              " values, got " + to_string(values.size()));
    for (double v : values)
        if (!std::isfinite(v))
            throw OpenMMException("CGSchNetForce: parameter '" + name + "' contains NaN or infinite values");
    parameters[name] = values;
}

const vector<double>& CGSchNetForce::getParameter(const string& name) const {
    auto it = parameters.find(name);
    if (it == parameters.end())
        throw OpenMMException("CGSchNetForce: the parameter '" + name + "' was not set");
    return it->second;
}

void CGSchNetForce::setTableSpacing(double spacing) {
    if (!(spacing >= 0))
        throw OpenMMException("CGSchNetForce: the table spacing must be >= 0 (0: exact filters)");
    tableSpacing = spacing;
}

void CGSchNetForce::setNeighborSkin(double distance) {
    if (!(distance >= 0))
        throw OpenMMException("CGSchNetForce: the neighbour-list skin must be >= 0");
    skin = distance;
}

/* ------------------------------------------------------------------------------------------------------------ */

static const double LOG2 = 0.69314718055994530942;
static const int MIN_BEADS_PER_THREAD = 768;

/* PyTorch's softplus (threshold 20) minus ln 2, and its derivative (the logistic function), from one exp. */
static inline double ssp(double x, double& slope) {
    if (x > 20.0) {
        slope = 1.0;
        return x - LOG2;
    }
    const double e = exp(-fabs(x)), inv = 1.0 / (1.0 + e);
    slope = x >= 0 ? inv : e * inv;
    return (x > 0 ? x : 0.0) + log1p(e) - LOG2;
}

static inline float ssp(float x, float& slope) {
    if (x > 20.0f) {
        slope = 1.0f;
        return x - (float) LOG2;
    }
    const float e = expf(-fabsf(x)), inv = 1.0f / (1.0f + e);
    slope = x >= 0 ? inv : e * inv;
    return (x > 0 ? x : 0.0f) + log1pf(e) - (float) LOG2;
}

/* out[n][m] = bias[m] + sum_k in[n][k] * wt[k][m] (wt: the transposed nn.Linear weight, nIn x nOut); rows of n.
 * N > 0: both sizes are N, known at compile time (the hidden width), so the loops unroll and vectorise fully. */
template <int N, typename Real>
static inline void linearRows(const Real* in, int rows, int nIn_, const Real* wt, const Real* bias, int nOut_,
                              Real* out) {
    const int nIn = N > 0 ? N : nIn_, nOut = N > 0 ? N : nOut_;
    for (int r = 0; r < rows; r++) {
        Real* o = out + (size_t) r * nOut;
        if (bias != NULL)
            for (int m = 0; m < nOut; m++)
                o[m] = bias[m];
        else
            for (int m = 0; m < nOut; m++)
                o[m] = 0;
        const Real* x = in + (size_t) r * nIn;
        for (int k = 0; k < nIn; k++) {
            const Real a = x[k];
            const Real* w = wt + (size_t) k * nOut;
            for (int m = 0; m < nOut; m++)
                o[m] += a * w[m];
        }
    }
}

/* gin[n][k] (+)= sum_m g[n][m] * w[m][k] (w: the nn.Linear weight, nOut x nIn): the input gradient of a layer. */
template <int N, typename Real>
static inline void linearBackRows(const Real* g, int rows, int nOut_, const Real* w, int nIn_, Real* gin, bool add) {
    const int nIn = N > 0 ? N : nIn_, nOut = N > 0 ? N : nOut_;
    for (int r = 0; r < rows; r++) {
        Real* o = gin + (size_t) r * nIn;
        if (!add)
            for (int k = 0; k < nIn; k++)
                o[k] = 0;
        const Real* x = g + (size_t) r * nOut;
        for (int m = 0; m < nOut; m++) {
            const Real a = x[m];
            const Real* wr = w + (size_t) m * nIn;
            for (int k = 0; k < nIn; k++)
                o[k] += a * wr[k];
        }
    }
}

static vector<double> transposed(const vector<double>& w, int nOut, int nIn) {
    vector<double> t(w.size());
    for (int m = 0; m < nOut; m++)
        for (int k = 0; k < nIn; k++)
            t[(size_t) k * nOut + m] = w[(size_t) m * nIn + k];
    return t;
}

template <typename Real>
static vector<Real> as(const vector<double>& v) { return vector<Real>(v.begin(), v.end()); }

/* The network's numbers in one working precision, and its work arrays. */
template <typename Real>
struct Net {
    struct Layer {
        vector<Real> in2fW, in2fT, o1W, o1T, o1b, o2W, o2T, o2b;
    };
    vector<Layer> layers[2];                    // [block][step]
    vector<Real> embedding, r1T, r1b, r2w, table[2];
    vector<Real> w[2], s[2];                    // exact filters only: per block, per pair, values and slopes (x C)
    // (n x H): features, their gradients, temporaries; per step and block the convolution inputs x and the
    // logistic of each out1 pre-activation (ssp's slope); per block the convolution sums and gradients
    vector<Real> h, hNext, tmp, vbuf, g, gNext, aggs[2], gAggs[2], gxs[2];
    vector<vector<Real> > xs, sig, wBuf, sBuf;  // wBuf, sBuf: per thread, one pair's filter values and slopes
    vector<vector<vector<Real> > > scatter;     // [thread][block]: pair sums of threads 1.. (thread 0: aggs, gxs)

    void allocate(int n, int H, int K, int threads) {
        const size_t nh = (size_t) n * H;
        for (auto* v : {&h, &hNext, &tmp, &vbuf, &g, &gNext, &aggs[0], &aggs[1], &gAggs[0], &gAggs[1], &gxs[0],
                        &gxs[1]})
            v->assign(nh, 0);
        xs.assign(2 * K, vector<Real>(nh));
        sig.assign(2 * K, vector<Real>(nh));
        wBuf.assign(threads, vector<Real>(H));
        sBuf.assign(threads, vector<Real>(H));
        scatter.assign(threads, vector<vector<Real> >(2, vector<Real>(nh)));
        scatter[0].clear();
    }
};

class CGSchNetForceImpl : public CustomCPPForceImpl {
public:
    CGSchNetForceImpl(const CGSchNetForce& owner) : CustomCPPForceImpl(owner), owner(owner) {}
    const CGSchNetForce& getOwner() const { return owner; }
    void initialize(ContextImpl& context);
    double computeForce(ContextImpl& context, const vector<Vec3>& positions, vector<Vec3>& forces);
    void updateParametersInContext(ContextImpl& context);
    long long numBuilds() const { return list.numBuilds; }
private:
    struct Filter {           // the filter networks of one block of one step (double: they build the tables)
        vector<double> f1W, f1b, f2W, f2b;
    };
    struct Pairs {            // the pairs of one block within its cutoff
        vector<int> i, j, interval;   // interval: of the filter table
        vector<double> r, ux, uy, uz, t, dEdr;   // t: position in the interval (0..1)
    };
    void setParameters();
    template <typename Real>
    void setNet(Net<Real>& net, const vector<double>& tableValues0, const vector<double>& tableValues1);
    void filter(int block, double r, double* value, double* slope) const;
    void gatherPairs();
    template <typename Real>
    void exactFilters(Net<Real>& net);
    template <typename Real, int HH>
    double evaluate(Net<Real>& net, vector<Vec3>& forces);
    /* Step k's filter values (and slopes, unless s is NULL) of pair q of block b into w[0..H-1] (s[...]). */
    template <typename Real, int HH>
    inline void filterAt(const Net<Real>& net, int b, const Pairs& p, size_t q, int k, Real* w, Real* s) const {
        const int H = HH > 0 ? HH : this->H;
        if (!tables) {
            copy_n(&net.w[b][q * C + (size_t) k * H], H, w);
            if (s != NULL)
                copy_n(&net.s[b][q * C + (size_t) k * H], H, s);
            return;
        }
        const Real t = (Real) p.t[q];
        const Real* c0 = &net.table[b][(size_t) p.interval[q] * 4 * C + (size_t) k * H];
        const Real *c1 = c0 + C, *c2 = c0 + 2 * C, *c3 = c0 + 3 * C;
        for (int f = 0; f < H; f++)
            w[f] = c0[f] + t * (c1[f] + t * (c2[f] + t * c3[f]));
        if (s != NULL) {
            const Real inv = (Real) (1.0 / spacing[b]);
            for (int f = 0; f < H; f++)
                s[f] = (c1[f] + t * (2 * c2[f] + 3 * t * c3[f])) * inv;
        }
    }
    template <class F>
    void parallel(F body) {   // body(thread, count) on every thread, then wait
        if (!pool) {
            body(0, 1);
            return;
        }
        const int count = pool->getNumThreads();
        pool->execute([&] (ThreadPool& p, int t) { body(t, count); });
        pool->waitForThreads();
    }
    const CGSchNetForce& owner;
    int n = 0, H = 0, R = 0, K = 0, C = 0, half = 0;
    double cut[2] = {0, 0}, gamma[2] = {0, 0}, r2b = 0;
    vector<double> centers[2];
    vector<Filter> filters[2];                   // [block][step]
    int nIntervals[2] = {0, 0};
    double spacing[2] = {0, 0};
    bool tables = false, single = true;
    vector<int> types, molecules;
    VerletList list;                             // tag 0: same molecule, 1: different molecules
    // beads in the order of their cells at the last list build (perm: position -> bead; slot: bead -> position),
    // so that a bead's neighbours lie near it in the work arrays at every system size
    vector<int> perm, slot;
    // the listed pairs (list indices, and each one's row) as the evaluation visits them: by blocks of 256 beads,
    // within a block by distance at the build (neighbouring pairs then read neighbouring rows of the filter tables)
    vector<int> order, rowOf;
    void sortBeads();
    void orderPairs();
    Pairs pairs[2];
    Net<float> netSingle;
    Net<double> netDouble;
    vector<double> threadEnergy;
    unique_ptr<ThreadPool> pool;                 // the CPU platform's threads ("Threads")
};

ForceImpl* CGSchNetForce::createImpl() const { return new CGSchNetForceImpl(*this); }

long long CGSchNetForce::getNumListBuilds(Context& context) {
    return dynamic_cast<CGSchNetForceImpl&>(getImplInContext(context)).numBuilds();
}

void CGSchNetForce::updateParametersInContext(Context& context) {
    dynamic_cast<CGSchNetForceImpl&>(getImplInContext(context)).updateParametersInContext(getContextImpl(context));
}

void CGSchNetForceImpl::setParameters() {
    if (owner.getHidden() != H || owner.getNumRbf() != R || owner.getNumInteractions() != K)
        throw OpenMMException("CGSchNetForce.updateParametersInContext: the architecture cannot change");
    for (auto& s : owner.getParameterSizes())
        if (!owner.hasParameter(s.first))
            throw OpenMMException("CGSchNetForce: the parameter '" + s.first + "' was not set");
    for (int b = 0; b < 2; b++) {
        centers[b] = owner.getParameter(string(BLOCKS[b]) + ".centers");
        gamma[b] = owner.getParameter(string(BLOCKS[b]) + ".gamma")[0];
        filters[b].assign(K, Filter());
        for (int k = 0; k < K; k++) {
            string p = string(BLOCKS[b]) + to_string(k) + ".";
            Filter& F = filters[b][k];
            F.f1W = owner.getParameter(p + "filter1.weight");
            F.f1b = owner.getParameter(p + "filter1.bias");
            F.f2W = owner.getParameter(p + "filter2.weight");
            F.f2b = owner.getParameter(p + "filter2.bias");
        }
    }
    r2b = owner.getParameter("readout2.bias")[0];
    tables = owner.getTableSpacing() > 0;
    vector<double> coefficients[2];
    for (int b = 0; b < 2 && tables; b++) {
        // as CGSchNet.tabulate_filters: the cutoff is a grid point, where value and slope are set to 0
        int m = max(2, (int) ceil(cut[b] / owner.getTableSpacing() - 1e-9));
        double hs = cut[b] / m;
        vector<double> v((size_t) (m + 1) * C), s((size_t) (m + 1) * C);
        for (int q = 0; q <= m; q++)
            filter(b, q * hs, &v[(size_t) q * C], &s[(size_t) q * C]);
        for (int c = 0; c < C; c++)
            v[(size_t) m * C + c] = s[(size_t) m * C + c] = 0.0;
        coefficients[b].assign((size_t) m * 4 * C, 0.0);
        for (int q = 0; q < m; q++)
            for (int c = 0; c < C; c++) {
                double y0 = v[(size_t) q * C + c], y1 = v[(size_t) (q + 1) * C + c];
                double m0 = s[(size_t) q * C + c] * hs, m1 = s[(size_t) (q + 1) * C + c] * hs;
                double* t = &coefficients[b][(size_t) q * 4 * C];
                t[c] = y0;
                t[C + c] = m0;
                t[2 * C + c] = 3.0 * (y1 - y0) - 2.0 * m0 - m1;
                t[3 * C + c] = 2.0 * (y0 - y1) + m0 + m1;
            }
        nIntervals[b] = m;
        spacing[b] = hs;
    }
    if (single)
        setNet(netSingle, coefficients[0], coefficients[1]);
    else
        setNet(netDouble, coefficients[0], coefficients[1]);
}

template <typename Real>
void CGSchNetForceImpl::setNet(Net<Real>& net, const vector<double>& table0, const vector<double>& table1) {
    net.embedding = as<Real>(owner.getParameter("embedding"));
    for (int b = 0; b < 2; b++) {
        net.layers[b].assign(K, typename Net<Real>::Layer());
        for (int k = 0; k < K; k++) {
            string p = string(BLOCKS[b]) + to_string(k) + ".";
            auto& L = net.layers[b][k];
            const vector<double>& in2f = owner.getParameter(p + "in2f.weight");
            const vector<double>& o1 = owner.getParameter(p + "out1.weight");
            const vector<double>& o2 = owner.getParameter(p + "out2.weight");
            L.in2fW = as<Real>(in2f);
            L.in2fT = as<Real>(transposed(in2f, H, H));
            L.o1W = as<Real>(o1);
            L.o1T = as<Real>(transposed(o1, H, H));
            L.o1b = as<Real>(owner.getParameter(p + "out1.bias"));
            L.o2W = as<Real>(o2);
            L.o2T = as<Real>(transposed(o2, H, H));
            L.o2b = as<Real>(owner.getParameter(p + "out2.bias"));
        }
    }
    net.r1T = as<Real>(transposed(owner.getParameter("readout1.weight"), half, H));
    net.r1b = as<Real>(owner.getParameter("readout1.bias"));
    net.r2w = as<Real>(owner.getParameter("readout2.weight"));
    net.table[0] = as<Real>(table0);
    net.table[1] = as<Real>(table1);
}

void CGSchNetForceImpl::filter(int b, double r, double* value, double* slope) const {
    vector<double> rbf(R), drbf(R), a(H), da(H);
    for (int m = 0; m < R; m++) {
        double e = r - centers[b][m];
        rbf[m] = exp(-gamma[b] * e * e);
        drbf[m] = -2.0 * gamma[b] * e * rbf[m];
    }
    const double arg = r * (M_PI / cut[b]);
    const double fcut = 0.5 * (cos(arg) + 1.0), dfcut = -0.5 * (M_PI / cut[b]) * sin(arg);
    for (int k = 0; k < K; k++) {
        const Filter& F = filters[b][k];
        for (int f = 0; f < H; f++) {
            double s = F.f1b[f], ds = 0.0;
            for (int m = 0; m < R; m++) {
                s += F.f1W[f * R + m] * rbf[m];
                ds += F.f1W[f * R + m] * drbf[m];
            }
            double slope;
            a[f] = ssp(s, slope);
            da[f] = slope * ds;
        }
        for (int f = 0; f < H; f++) {
            double w = F.f2b[f], dw = 0.0;
            for (int m = 0; m < H; m++) {
                w += F.f2W[f * H + m] * a[m];
                dw += F.f2W[f * H + m] * da[m];
            }
            value[k * H + f] = w * fcut;
            slope[k * H + f] = dw * fcut + w * dfcut;
        }
    }
}

void CGSchNetForceImpl::initialize(ContextImpl& context) {
    CustomCPPForceImpl::initialize(context);
    n = context.getSystem().getNumParticles();
    checkParticleCount("CGSchNetForce", n, owner.getNumParticles());
    H = owner.getHidden();
    R = owner.getNumRbf();
    K = owner.getNumInteractions();
    if (H < 2)
        throw OpenMMException("CGSchNetForce: setArchitecture() was not called");
    C = K * H;
    half = H / 2;
    cut[0] = owner.getIntraCutoff();
    cut[1] = owner.getInterCutoff();
    single = !owner.getUsesDoublePrecision();
    types.resize(n);
    molecules.resize(n);
    for (int i = 0; i < n; i++) {
        owner.getParticleParameters(i, types[i], molecules[i]);
        if (types[i] >= owner.getNumTypes())
            throw OpenMMException("CGSchNetForce: a particle's type is >= the number of types");
    }
    setParameters();
    list.setup(n, max(cut[0], cut[1]), owner.getNeighborSkin(), owner.usesPeriodicBoundaryConditions(), 1,
               "CGSchNetForce");
    // the CPU platform's threads, one per MIN_BEADS_PER_THREAD beads at most: below that a thread costs more in
    // synchronisation (13 parallel regions per evaluation) than it saves
    const int threads = min(platformThreads(context), max(1, n / MIN_BEADS_PER_THREAD));
    if (threads > 1)
        pool.reset(new ThreadPool(threads));
    if (single)
        netSingle.allocate(n, H, K, threads);
    else
        netDouble.allocate(n, H, K, threads);
    threadEnergy.assign(threads, 0.0);
}

void CGSchNetForceImpl::updateParametersInContext(ContextImpl& context) {
    if (owner.getNumParticles() != n)
        throw OpenMMException("CGSchNetForce.updateParametersInContext: the number of particles changed");
    if (owner.getUsesDoublePrecision() == single)
        throw OpenMMException("CGSchNetForce.updateParametersInContext: the precision cannot change");
    setParameters();
    context.systemChanged();
}

void CGSchNetForceImpl::gatherPairs() {
    for (auto& p : pairs) {
        p.i.clear(), p.j.clear(), p.r.clear(), p.ux.clear(), p.uy.clear(), p.uz.clear();
    }
    const double c2[2] = {cut[0] * cut[0], cut[1] * cut[1]};
    for (size_t o = 0; o < order.size(); o++) {
        const int k = order[o], i = rowOf[o], a = slot[i];
        {
            const int b = list.tag[k];
            const Vec3 d = list.separation(i, k);
            const double r2 = d.dot(d);
            if (r2 >= c2[b] || r2 == 0.0)
                continue;
            const double r = sqrt(r2), inv = 1.0 / r;
            Pairs& p = pairs[b];
            p.i.push_back(a);
            p.j.push_back(slot[list.partner[k]]);
            p.r.push_back(r);
            p.ux.push_back(d[0] * inv);
            p.uy.push_back(d[1] * inv);
            p.uz.push_back(d[2] * inv);
        }
    }
    for (int b = 0; b < 2; b++) {
        Pairs& p = pairs[b];
        const size_t np = p.i.size();
        p.dEdr.assign(np, 0.0);
        if (!tables)
            continue;
        p.interval.resize(np);
        p.t.resize(np);
        const double inv = 1.0 / spacing[b];
        for (size_t q = 0; q < np; q++) {
            const double x = p.r[q] * inv;
            p.interval[q] = min((int) x, nIntervals[b] - 1);
            p.t[q] = x - p.interval[q];
        }
    }
}

void CGSchNetForceImpl::sortBeads() {
    // cells of about half the cutoff over the wrapped positions (the list's frame), beads by cell (counting sort)
    perm.resize(n);
    slot.resize(n);
    double lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0};
    for (int i = 0; i < n; i++)
        for (int d = 0; d < 3; d++) {
            lo[d] = i == 0 ? list.local[i][d] : min(lo[d], list.local[i][d]);
            hi[d] = i == 0 ? list.local[i][d] : max(hi[d], list.local[i][d]);
        }
    // half the cutoff, or larger where the beads are sparse (an open system), so there are about n cells at most
    double volume = 1.0, size = 0.5 * max(cut[0], cut[1]);
    for (int d = 0; d < 3; d++)
        volume *= max(hi[d] - lo[d], size);
    size = max(size, cbrt(volume / n));
    int nc[3];
    for (int d = 0; d < 3; d++)
        nc[d] = max(1, (int) ((hi[d] - lo[d]) / size) + 1);
    vector<int> cellOf(n), count((size_t) nc[0] * nc[1] * nc[2] + 1, 0);
    for (int i = 0; i < n; i++) {
        int c[3];
        for (int d = 0; d < 3; d++)
            c[d] = min(nc[d] - 1, max(0, (int) ((list.local[i][d] - lo[d]) / size)));
        cellOf[i] = (c[0] * nc[1] + c[1]) * nc[2] + c[2];
        count[cellOf[i] + 1]++;
    }
    for (size_t c = 1; c < count.size(); c++)
        count[c] += count[c - 1];
    for (int i = 0; i < n; i++) {
        perm[count[cellOf[i]]++] = i;
    }
    for (int a = 0; a < n; a++)
        slot[perm[a]] = a;
}

void CGSchNetForceImpl::orderPairs() {
    const int block = 256;
    const double width = 0.01;   // nm: distance bins of the counting sort
    const int bins = (int) (max(cut[0], cut[1]) / width) + 2;
    order.clear();
    rowOf.clear();
    vector<int> ks, is, bin, start(bins + 1);
    for (int a0 = 0; a0 < n; a0 += block) {
        ks.clear(), is.clear(), bin.clear();
        for (int a = a0; a < min(n, a0 + block); a++) {
            const int i = perm[a];
            for (int k = list.start[i]; k < list.start[i + 1]; k++) {
                const Vec3 d = list.separation(i, k);
                ks.push_back(k);
                is.push_back(i);
                bin.push_back(min(bins - 1, (int) (sqrt(d.dot(d)) / width)));
            }
        }
        fill(start.begin(), start.end(), 0);
        for (int b : bin)
            start[b + 1]++;
        for (int b = 0; b < bins; b++)
            start[b + 1] += start[b];
        const size_t base = order.size();
        order.resize(base + ks.size());
        rowOf.resize(base + ks.size());
        for (size_t q = 0; q < ks.size(); q++) {
            const size_t o = base + start[bin[q]]++;
            order[o] = ks[q];
            rowOf[o] = is[q];
        }
    }
}

template <typename Real>
void CGSchNetForceImpl::exactFilters(Net<Real>& net) {
    vector<double> w(C), s(C);
    for (int b = 0; b < 2; b++) {
        const Pairs& p = pairs[b];
        net.w[b].resize(p.i.size() * C);
        net.s[b].resize(p.i.size() * C);
        for (size_t q = 0; q < p.i.size(); q++) {
            filter(b, p.r[q], w.data(), s.data());
            copy(w.begin(), w.end(), &net.w[b][q * C]);
            copy(s.begin(), s.end(), &net.s[b][q * C]);
        }
    }
}

double CGSchNetForceImpl::computeForce(ContextImpl& context, const vector<Vec3>& pos, vector<Vec3>& forces) {
    Vec3 box[3];
    context.getPeriodicBoxVectors(box[0], box[1], box[2]);
    if (list.update(pos, box, [&] (int i, int j) { return molecules[i] == molecules[j] ? 0 : 1; }))
    {
        sortBeads();
        orderPairs();
    }
    gatherPairs();
    if (single) {
        if (!tables)
            exactFilters(netSingle);
        switch (H) {   // the common widths as compile-time constants
            case 16: return evaluate<float, 16>(netSingle, forces);
            case 32: return evaluate<float, 32>(netSingle, forces);
            case 64: return evaluate<float, 64>(netSingle, forces);
            default: return evaluate<float, 0>(netSingle, forces);
        }
    }
    if (!tables)
        exactFilters(netDouble);
    switch (H) {
        case 16: return evaluate<double, 16>(netDouble, forces);
        case 32: return evaluate<double, 32>(netDouble, forces);
        case 64: return evaluate<double, 64>(netDouble, forces);
        default: return evaluate<double, 0>(netDouble, forces);
    }
}

template <typename Real, int HH>
double CGSchNetForceImpl::evaluate(Net<Real>& net, vector<Vec3>& forces) {
    // Each parallel region hands thread t of T a block of rows (beads) or of pairs; scatters along pairs go to
    // per-thread arrays (thread 0: the block's own) summed by rows in the next region.  Features in Real; the
    // pair derivatives, energies and forces in double.
    const int H = HH > 0 ? HH : this->H;
    auto rows = [&] (int t, int count, int& first, int& last) {
        first = (int) ((long long) n * t / count);
        last = (int) ((long long) n * (t + 1) / count);
    };
    auto target = [&] (int t, int b, vector<Real>* own) -> Real* {
        Real* out = t == 0 ? own[b].data() : net.scatter[t][b].data();
        fill(out, out + (size_t) n * H, (Real) 0);
        return out;
    };
    vector<Real>& h = net.h;
    vector<Real>& g = net.g;
    for (int a = 0; a < n; a++) {
        const int t = types[perm[a]];
        copy(&net.embedding[(size_t) t * H], &net.embedding[(size_t) (t + 1) * H], &h[(size_t) a * H]);
    }
    // forward
    for (int k = 0; k < K; k++) {
        parallel([&] (int t, int count) {
            int first, last;
            rows(t, count, first, last);
            for (int b = 0; b < 2; b++)
                linearRows<HH>(&h[(size_t) first * H], last - first, H, net.layers[b][k].in2fT.data(), (Real*) NULL,
                               H, &net.xs[2 * k + b][(size_t) first * H]);
        });
        parallel([&] (int t, int count) {
            Real* w = net.wBuf[t].data();
            for (int b = 0; b < 2; b++) {
                const Pairs& p = pairs[b];
                Real* agg = target(t, b, net.aggs);
                const Real* x = net.xs[2 * k + b].data();
                const size_t q0 = p.i.size() * t / count, q1 = p.i.size() * (t + 1) / count;
                for (size_t q = q0; q < q1; q++) {
                    filterAt<Real, HH>(net, b, p, q, k, w, (Real*) NULL);
                    Real* ai = agg + (size_t) p.i[q] * H;
                    Real* aj = agg + (size_t) p.j[q] * H;
                    const Real* xi = x + (size_t) p.i[q] * H;
                    const Real* xj = x + (size_t) p.j[q] * H;
                    for (int f = 0; f < H; f++) {
                        ai[f] += w[f] * xj[f];
                        aj[f] += w[f] * xi[f];
                    }
                }
            }
        });
        parallel([&] (int t, int count) {
            int first, last;
            rows(t, count, first, last);
            const size_t e0 = (size_t) first * H, e1 = (size_t) last * H;
            copy(&h[e0], &h[e1], &net.hNext[e0]);
            for (int b = 0; b < 2; b++) {
                const auto& L = net.layers[b][k];
                for (int u = 1; u < count; u++)
                    for (size_t e = e0; e < e1; e++)
                        net.aggs[b][e] += net.scatter[u][b][e];
                Real* z = net.sig[2 * k + b].data();
                linearRows<HH>(&net.aggs[b][e0], last - first, H, L.o1T.data(), L.o1b.data(), H, &z[e0]);
                for (size_t e = e0; e < e1; e++)
                    net.tmp[e] = ssp(z[e], z[e]);   // z becomes the slope
                linearRows<HH>(&net.tmp[e0], last - first, H, L.o2T.data(), L.o2b.data(), H, &net.vbuf[e0]);
                for (size_t e = e0; e < e1; e++)
                    net.hNext[e] += net.vbuf[e];
            }
        });
        swap(h, net.hNext);
    }
    // readout and its gradient dE/dh
    parallel([&] (int t, int count) {
        int first, last;
        rows(t, count, first, last);
        vector<Real> zr(half), gr(half);
        double energy = 0.0;
        for (int i = first; i < last; i++) {
            linearRows<0>(&h[(size_t) i * H], 1, H, net.r1T.data(), net.r1b.data(), half, zr.data());
            for (int m = 0; m < half; m++) {
                Real slope;
                energy += net.r2w[m] * ssp(zr[m], slope);
                gr[m] = net.r2w[m] * slope;
            }
            // g_i = readout1.weight^T gr: readout1.weight is r1T transposed
            Real* gi = &g[(size_t) i * H];
            for (int f = 0; f < H; f++) {
                Real s = 0;
                for (int m = 0; m < half; m++)
                    s += net.r1T[(size_t) f * half + m] * gr[m];
                gi[f] = s;
            }
        }
        threadEnergy[t] = energy;
    });
    // backward through the interaction steps
    for (int k = K - 1; k >= 0; k--) {
        parallel([&] (int t, int count) {
            int first, last;
            rows(t, count, first, last);
            const size_t e0 = (size_t) first * H, e1 = (size_t) last * H;
            for (int b = 0; b < 2; b++) {
                const auto& L = net.layers[b][k];
                const Real* z = net.sig[2 * k + b].data();
                linearBackRows<HH>(&g[e0], last - first, H, L.o2W.data(), H, &net.tmp[e0], false);
                for (size_t e = e0; e < e1; e++)
                    net.tmp[e] *= z[e];
                linearBackRows<HH>(&net.tmp[e0], last - first, H, L.o1W.data(), H, &net.gAggs[b][e0], false);
            }
        });
        parallel([&] (int t, int count) {
            Real *w = net.wBuf[t].data(), *s = net.sBuf[t].data();
            for (int b = 0; b < 2; b++) {
                Pairs& p = pairs[b];
                Real* gx = target(t, b, net.gxs);
                const Real* x = net.xs[2 * k + b].data();
                const Real* gAgg = net.gAggs[b].data();
                const size_t q0 = p.i.size() * t / count, q1 = p.i.size() * (t + 1) / count;
                for (size_t q = q0; q < q1; q++) {
                    filterAt<Real, HH>(net, b, p, q, k, w, s);
                    const size_t i = (size_t) p.i[q] * H, j = (size_t) p.j[q] * H;
                    const Real *gi = gAgg + i, *gj = gAgg + j, *xi = x + i, *xj = x + j;
                    Real *gxi = gx + i, *gxj = gx + j;
                    Real d = 0;
#pragma omp simd reduction(+:d)
                    for (int f = 0; f < H; f++) {
                        gxj[f] += w[f] * gi[f];
                        gxi[f] += w[f] * gj[f];
                        d += s[f] * (gi[f] * xj[f] + gj[f] * xi[f]);
                    }
                    p.dEdr[q] += d;
                }
            }
        });
        parallel([&] (int t, int count) {
            int first, last;
            rows(t, count, first, last);
            const size_t e0 = (size_t) first * H, e1 = (size_t) last * H;
            copy(&g[e0], &g[e1], &net.gNext[e0]);
            for (int b = 0; b < 2; b++) {
                for (int u = 1; u < count; u++)
                    for (size_t e = e0; e < e1; e++)
                        net.gxs[b][e] += net.scatter[u][b][e];
                linearBackRows<HH>(&net.gxs[b][e0], last - first, H, net.layers[b][k].in2fW.data(), H,
                                   &net.gNext[e0], true);
            }
        });
        swap(g, net.gNext);
    }
    std::fill(forces.begin(), forces.end(), Vec3());   // the caller's array is reused: store, do not add
    for (int b = 0; b < 2; b++) {
        const Pairs& p = pairs[b];
        for (size_t q = 0; q < p.i.size(); q++) {
            const Vec3 f(p.dEdr[q] * p.ux[q], p.dEdr[q] * p.uy[q], p.dEdr[q] * p.uz[q]);   // u points from i to j
            forces[perm[p.i[q]]] += f;
            forces[perm[p.j[q]]] -= f;
        }
    }
    double energy = n * r2b;
    for (double e : threadEnergy)
        energy += e;
    return energy;
}

/* ------------------------------------------------------------------------------------------------------------ */

static string joinValues(const vector<double>& v) {
    stringstream s;
    s.precision(17);
    for (size_t k = 0; k < v.size(); k++)
        s << (k ? " " : "") << v[k];
    return s.str();
}

static vector<double> splitValues(const string& text) {
    vector<double> v;
    stringstream s(text);
    string item;
    while (s >> item)
        v.push_back(stod(item));
    return v;
}

class CGSchNetForceProxy : public SerializationProxy {
public:
    CGSchNetForceProxy() : SerializationProxy("CGSchNetForce") {}
    void serialize(const void* object, SerializationNode& node) const {
        node.setIntProperty("version", 1);
        const CGSchNetForce& force = *reinterpret_cast<const CGSchNetForce*>(object);
        node.setIntProperty("forceGroup", force.getForceGroup());
        node.setStringProperty("name", force.getName());
        node.setIntProperty("numTypes", force.getNumTypes());
        node.setIntProperty("hidden", force.getHidden());
        node.setIntProperty("numRbf", force.getNumRbf());
        node.setIntProperty("numInteractions", force.getNumInteractions());
        node.setDoubleProperty("intraCutoff", force.getIntraCutoff());
        node.setDoubleProperty("interCutoff", force.getInterCutoff());
        node.setDoubleProperty("tableSpacing", force.getTableSpacing());
        node.setDoubleProperty("skin", force.getNeighborSkin());
        node.setIntProperty("periodic", force.usesPeriodicBoundaryConditions() ? 1 : 0);
        node.setIntProperty("double", force.getUsesDoublePrecision() ? 1 : 0);
        SerializationNode& particles = node.createChildNode("Particles");
        for (int i = 0; i < force.getNumParticles(); i++) {
            int t, m;
            force.getParticleParameters(i, t, m);
            particles.createChildNode("Particle").setIntProperty("t", t).setIntProperty("m", m);
        }
        SerializationNode& params = node.createChildNode("Parameters");
        for (auto& s : force.getParameterSizes())
            if (force.hasParameter(s.first))
                params.createChildNode("P").setStringProperty("name", s.first)
                      .setStringProperty("v", joinValues(force.getParameter(s.first)));
    }
    void* deserialize(const SerializationNode& node) const {
        int version = node.getIntProperty("version");
        if (version != 1)
            throw OpenMMException("CGSchNetForce: unsupported version " + to_string(version));
        CGSchNetForce* force = new CGSchNetForce();
        try {
            force->setForceGroup(node.getIntProperty("forceGroup", 0));
            force->setName(node.getStringProperty("name", force->getName()));
            force->setArchitecture(node.getIntProperty("numTypes"), node.getIntProperty("hidden"),
                                   node.getIntProperty("numRbf"), node.getIntProperty("numInteractions"),
                                   node.getDoubleProperty("intraCutoff"), node.getDoubleProperty("interCutoff"));
            force->setTableSpacing(node.getDoubleProperty("tableSpacing"));
            force->setNeighborSkin(node.getDoubleProperty("skin", 0.1));
            force->setUsesPeriodicBoundaryConditions(node.getIntProperty("periodic") != 0);
            force->setUsesDoublePrecision(node.getIntProperty("double", 0) != 0);
            for (auto& p : node.getChildNode("Particles").getChildren())
                force->addParticle(p.getIntProperty("t"), p.getIntProperty("m"));
            for (auto& p : node.getChildNode("Parameters").getChildren())
                force->setParameter(p.getStringProperty("name"), splitValues(p.getStringProperty("v")));
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

__attribute__((constructor)) void cgml_register_schnet_proxy() {
    SerializationProxy::registerProxy(typeid(CGSchNetForce), new CGSchNetForceProxy());
}

static CGSchNetForce* asSchNetForce(void* force) {
    CGSchNetForce* f = dynamic_cast<CGSchNetForce*>(reinterpret_cast<Force*>(force));
    if (f == NULL)
        throw OpenMMException("this force is not a CGSchNetForce");
    return f;
}

int cgml_schnet_force_is(void* force) {
    return dynamic_cast<CGSchNetForce*>(reinterpret_cast<Force*>(force)) != NULL ? 1 : 0;
}

int cgml_schnet_force_set_parameter(void* force, const char* name, const double* values, int count) {
    return guarded([&] {
        asSchNetForce(force)->setParameter(name, vector<double>(values, values + count));
        return 0;
    }, -1);
}

int cgml_schnet_force_update_in_context(void* force, void* context) {
    return guarded([&] {
        asSchNetForce(force)->updateParametersInContext(*reinterpret_cast<Context*>(context));
        return 0;
    }, -1);
}

long long cgml_schnet_force_num_list_builds(void* force, void* context) {
    return guarded([&] { return asSchNetForce(force)->getNumListBuilds(*reinterpret_cast<Context*>(context)); },
                   -1LL);
}

}
